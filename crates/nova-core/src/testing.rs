//! For tests only: whether they run in CI, where a missing service or tool fails a test instead of
//! skipping it. The one place that asks (this crate otherwise reads no environment).

/// Whether the tests run in CI: `CI` is set to anything but empty, `0` or `false` (`.ci/run` sets `CI=true`,
/// as most CI systems do).
pub fn in_ci() -> bool {
    ci_says(std::env::var("CI").ok().as_deref())
}

fn ci_says(value: Option<&str>) -> bool {
    value.is_some_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_is_any_value_but_empty_zero_or_false() {
        for yes in ["true", "1", "yes"] {
            assert!(ci_says(Some(yes)), "{yes}");
        }
        for no in [None, Some(""), Some("0"), Some("false")] {
            assert!(!ci_says(no), "{no:?}");
        }
    }
}
