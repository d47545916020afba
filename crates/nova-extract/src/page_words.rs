//! The words of a page and where they stand, from `pdftotext -bbox` (see `nova_app::engines::Pdftoppm::words`):
//! what a person's view of the page needs to point at a value.

pub use nova_core::{PageWord, PageWords};

/// The most XHTML read from `pdftotext` for one page: a dense page of small print is well under 1 MiB.
pub const MAX_XHTML_BYTES: u64 = 8 * 1024 * 1024;
/// The most words kept of one page.
const MAX_WORDS: usize = 20_000;

/// The first page of `pdftotext -bbox` output; `None` when it holds none.
pub fn parse(xhtml: &str) -> Option<PageWords> {
    let start = xhtml.find("<page ")?;
    let head_end = start + xhtml[start..].find('>')?;
    let head = &xhtml[start..head_end];
    let (width, height) = (attribute(head, "width")?, attribute(head, "height")?);
    if !(width > 0.0 && height > 0.0) {
        return None;
    }
    let body = &xhtml[head_end..];
    let body = &body[..body.find("</page>").unwrap_or(body.len())];
    let mut words = Vec::new();
    for part in body.split("<word ").skip(1).take(MAX_WORDS) {
        let Some(close) = part.find('>') else { continue };
        // The split took the space before the first attribute.
        let (tag, rest) = (format!(" {}", &part[..close]), &part[close + 1..]);
        let Some(end) = rest.find("</word>") else { continue };
        let (Some(x0), Some(y0), Some(x1), Some(y1)) =
            (attribute(&tag, "xMin"), attribute(&tag, "yMin"), attribute(&tag, "xMax"), attribute(&tag, "yMax"))
        else {
            continue;
        };
        let fraction = |v: f64, of: f64| (v / of).clamp(0.0, 1.0);
        words.push(PageWord {
            text: unescape(&rest[..end]),
            x0: fraction(x0, width),
            y0: fraction(y0, height),
            x1: fraction(x1, width),
            y1: fraction(y1, height),
        });
    }
    Some(PageWords { width, height, words })
}

/// The number in `name="..."` of a tag.
fn attribute(tag: &str, name: &str) -> Option<f64> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    let value = &tag[at..at + tag[at..].find('"')?];
    value.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// XML's escapes in a word's text.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';').filter(|&e| e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .map(|hex| u32::from_str_radix(hex, 16).ok())
                .unwrap_or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_read_with_their_boxes_as_fractions_of_the_page() {
        let xhtml = r#"<doc>
  <page width="600.000000" height="800.000000">
    <word xMin="60.000000" yMin="80.000000" xMax="120.000000" yMax="100.000000">Invoice</word>
    <word xMin="300" yMin="400" xMax="900" yMax="420">Smith&amp;Sons &#x2013; &lt;1&gt; &bogus; &#65;</word>
    <word xMin="nan" yMin="1" xMax="2" yMax="3">skipped</word>
  </page>
  <page width="1" height="1"><word xMin="0" yMin="0" xMax="1" yMax="1">next</word></page>
</doc>"#;
        let page = parse(xhtml).unwrap();
        assert_eq!((page.width, page.height), (600.0, 800.0));
        assert_eq!(page.words.len(), 2);
        assert_eq!(page.words[0], PageWord { text: "Invoice".into(), x0: 0.1, y0: 0.1, x1: 0.2, y1: 0.125 });
        assert_eq!(page.words[1].text, "Smith&Sons \u{2013} <1> &bogus; A");
        assert_eq!(page.words[1].x1, 1.0, "clamped to the page");
        assert_eq!(parse("<doc></doc>"), None);
        assert_eq!(parse(r#"<page width="0" height="5">"#), None);
    }
}
