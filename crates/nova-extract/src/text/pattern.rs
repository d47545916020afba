//! How the patterns of the text rules are compiled.

use regex::Regex;

pub(super) fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("the patterns in this module are valid")
}
