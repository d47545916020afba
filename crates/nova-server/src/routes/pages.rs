//! Pages of the lists (`GET /v1/jobs`, `GET /v1/documents`): the `limit` and `cursor` parameters and the
//! `{"data": [...], "next_cursor": ...}` answer.
//!
//! A cursor is opaque to clients. It holds the UUID of the last item of the page before (ids are UUIDv7,
//! so the store pages by id), without the id's prefix: a client is not tempted to read it as an id.

use nova_store::{Page, MAX_PAGE_SIZE};
use serde::Serialize;

use crate::error::ApiError;

/// Items on a page when the client does not say.
pub const DEFAULT_LIMIT: u32 = 50;

/// The answer of a list: one page, newest first, and the cursor of the next page (`null` on the last).
#[derive(Serialize, utoipa::ToSchema)]
pub struct PageBody<T> {
    /// Newest first.
    data: Vec<T>,
    /// The `cursor` of the next page; `null` on the last.
    next_cursor: Option<String>,
}

impl<T> PageBody<T> {
    /// The answer for `page`; `id` gives an item's id, whose prefix (`job_`, `doc_`) is `prefix`.
    pub fn new(page: Page<T>, prefix: &str, id: impl Fn(&T) -> String) -> Self {
        let next_cursor = match page.items.last() {
            Some(last) if page.more => id(last).strip_prefix(prefix).map(str::to_string),
            _ => None,
        };
        Self { data: page.items, next_cursor }
    }
}

/// The `limit` parameter: 1 to [`MAX_PAGE_SIZE`], [`DEFAULT_LIMIT`] when absent or empty.
pub fn limit(text: Option<&str>) -> Result<u32, ApiError> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(DEFAULT_LIMIT),
        Some(t) => t.parse().ok().filter(|n| (1..=MAX_PAGE_SIZE).contains(n)).ok_or_else(|| ApiError::Unprocessable {
            code: "invalid_limit",
            message: format!("limit must be a whole number from 1 to {MAX_PAGE_SIZE}"),
        }),
    }
}

/// The `cursor` parameter as the id of the last item seen (prefix `prefix`); `None` for the first page.
pub fn cursor<T: std::str::FromStr>(text: Option<&str>, prefix: &str) -> Result<Option<T>, ApiError> {
    let Some(text) = text.filter(|t| !t.is_empty()) else { return Ok(None) };
    // The id's own parser checks the rest; a prefix in the cursor itself is refused.
    let valid = text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit());
    let id = valid.then(|| format!("{prefix}{text}").parse().ok()).flatten();
    id.map(Some).ok_or_else(|| ApiError::Unprocessable {
        code: "invalid_cursor",
        message: "cursor must be the `next_cursor` of an earlier page of this list, unchanged".into(),
    })
}

#[cfg(test)]
mod tests {
    use nova_core::JobId;
    use nova_store::Page;

    use super::*;

    fn check_limit(text: Option<&str>, expected: Option<u32>) {
        assert_eq!(limit(text).ok(), expected, "{text:?}");
    }

    #[test]
    fn limits_default_to_fifty_and_stay_within_bounds() {
        check_limit(None, Some(50));
        check_limit(Some(""), Some(50));
        check_limit(Some("1"), Some(1));
        check_limit(Some("200"), Some(200));
        check_limit(Some("0"), None);
        check_limit(Some("201"), None);
        check_limit(Some("-1"), None);
        check_limit(Some("ten"), None);
        check_limit(Some("1.5"), None);
    }

    #[test]
    fn a_cursor_round_trips_and_anything_else_is_refused() {
        let id = JobId::new();
        let body = PageBody::new(Page { items: vec![id], more: true }, JobId::PREFIX, JobId::to_string);
        let next = body.next_cursor.expect("a cursor when more follows");
        assert_eq!(cursor::<JobId>(Some(&next), JobId::PREFIX).unwrap(), Some(id));
        assert_eq!(cursor::<JobId>(None, JobId::PREFIX).unwrap(), None);
        assert_eq!(cursor::<JobId>(Some(""), JobId::PREFIX).unwrap(), None);
        let (as_id, longer, not_hex) = (id.to_string(), format!("{next}0"), format!("g{}", &next[1..]));
        for bad in [as_id.as_str(), "zz", &next[1..], &longer, &not_hex] {
            assert!(cursor::<JobId>(Some(bad), JobId::PREFIX).is_err(), "{bad}");
        }
        let last = PageBody::new(Page { items: vec![id], more: false }, JobId::PREFIX, JobId::to_string);
        assert_eq!(last.next_cursor, None);
    }
}
