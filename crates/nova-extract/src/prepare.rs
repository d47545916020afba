//! Getting a page ready for `pdf-extract`, within [`Limits`].
//!
//! `pdf-extract` trusts the document: it inflates every stream it meets without a cap, runs a Form XObject
//! inside the content that draws it by recursion (a form that draws itself overflows the stack), runs an
//! image XObject's pixels as if they were a content stream, and looks up a page's inherited resources
//! through `/Parent` links by recursion too. Before a page's text is read, this module walks what the page
//! will make `pdf-extract` read and puts it in a form that cannot hurt:
//!
//! - every stream the page reaches (its content, its forms, its fonts' files and maps, colour profiles) is
//!   inflated here under a per-stream and a per-document cap ([`Limits::max_stream_bytes`],
//!   [`Limits::max_decoded_bytes`]) and stored back decoded, so `pdf-extract` has nothing left to inflate; a
//!   Flate stream cut short keeps what it holds, as readers do;
//! - the content's operators are counted with every form expanded where it is drawn
//!   ([`Limits::max_operators`]), so a page of forms that draw forms cannot make billions of them;
//! - a `Do` that would draw a form already being drawn (a cycle), an image, or nothing at all is cut from the
//!   content, and forms nested deeper than [`Limits::max_nesting`] are refused;
//! - the page's resources and media box, when inherited, are copied onto the page, found through at most
//!   [`MAX_PARENTS`] `/Parent` links.

use std::collections::{HashMap, HashSet};

use lopdf::{Dictionary, Document, Object, ObjectId, Stream};

use crate::{ExtractError, Limits};

/// `/Parent` links followed to find a page's inherited attributes.
const MAX_PARENTS: usize = 32;
/// Objects visited in one page's resources when looking for streams to decode.
const MAX_RESOURCE_NODES: usize = 20_000;
/// A page that states no media box is US Letter.
const LETTER: [i64; 4] = [0, 0, 612, 792];

/// Decoding state across the pages of one document.
pub(crate) struct Preparer<'a> {
    limits: &'a Limits,
    /// Bytes decoded so far in the whole document.
    decoded: u64,
    /// Streams already decoded in place.
    done: HashSet<ObjectId>,
    /// Each form's operator count with its own forms expanded.
    form_operators: HashMap<ObjectId, u64>,
    /// What was cut, for the invoice's warnings (each said once).
    pub warnings: Vec<String>,
}

/// One `Do` in a content stream: the XObject's name and the bytes from the name to the operator's end.
struct Invocation {
    name: Vec<u8>,
    span: std::ops::Range<usize>,
}

/// What a content stream holds, for the limits.
struct Lexed {
    operators: u64,
    invocations: Vec<Invocation>,
}

impl<'a> Preparer<'a> {
    pub fn new(limits: &'a Limits) -> Self {
        Self { limits, decoded: 0, done: HashSet::new(), form_operators: HashMap::new(), warnings: Vec::new() }
    }

    /// Prepares one page; an error is the whole document's (a limit was hit).
    pub fn page(&mut self, doc: &mut Document, page: ObjectId) -> Result<(), ExtractError> {
        let resources = self.settle_inherited(doc, page);
        let mut content = Vec::new();
        for id in doc.get_page_contents(page) {
            let decoded = self.decode(doc, id)?.unwrap_or_default();
            content.extend_from_slice(&decoded);
            content.push(b'\n');
        }
        self.decode_resources(doc, &resources)?;
        let mut stack = Vec::new();
        let (content, operators) = self.expand(doc, content, &resources, &mut stack)?;
        if operators > self.limits.max_operators {
            return Err(ExtractError::TooManyOperators { limit: self.limits.max_operators });
        }
        // One decoded stream in place of the page's: shared content streams stay as they were for other pages.
        let id = doc.add_object(Stream::new(Dictionary::new(), content));
        if let Ok(dict) = doc.get_object_mut(page).and_then(Object::as_dict_mut) {
            dict.set("Contents", Object::Reference(id));
        }
        Ok(())
    }

    /// Copies the page's inherited `/Resources` and `/MediaBox` onto the page itself and returns its
    /// resources (empty when it has none).
    fn settle_inherited(&mut self, doc: &mut Document, page: ObjectId) -> Dictionary {
        let inherited = |key: &[u8]| -> Option<Object> {
            let mut node = doc.get_dictionary(page).ok()?;
            for _ in 0..MAX_PARENTS {
                if let Ok(value) = node.get(key) {
                    return Some(value.clone());
                }
                node = node.get(b"Parent").and_then(Object::as_reference).and_then(|id| doc.get_dictionary(id)).ok()?;
            }
            None
        };
        let resources = inherited(b"Resources");
        let media_box = inherited(b"MediaBox")
            .filter(|b| deref(doc, b).as_array().is_ok_and(|a| a.len() == 4))
            .unwrap_or_else(|| Object::Array(LETTER.iter().map(|&n| Object::Integer(n)).collect()));
        let resources_dict = resources.as_ref().and_then(|r| deref(doc, r).as_dict().ok().cloned()).unwrap_or_default();
        if let Ok(dict) = doc.get_object_mut(page).and_then(Object::as_dict_mut) {
            dict.set("Resources", Object::Dictionary(resources_dict.clone()));
            dict.set("MediaBox", media_box);
        }
        resources_dict
    }

    /// Expands a content stream's forms for the count, cuts the `Do`s that must not run, and returns the
    /// content to keep with its operator count, forms included.
    fn expand(
        &mut self,
        doc: &mut Document,
        content: Vec<u8>,
        resources: &Dictionary,
        stack: &mut Vec<ObjectId>,
    ) -> Result<(Vec<u8>, u64), ExtractError> {
        let lexed = lex(&content);
        let mut operators = lexed.operators;
        let mut cuts: Vec<std::ops::Range<usize>> = Vec::new();
        let xobjects = resources.get(b"XObject").ok().map(|x| deref(doc, x)).and_then(|x| x.as_dict().ok()).cloned();
        for invocation in lexed.invocations {
            let target = xobjects.as_ref().and_then(|x| x.get(&invocation.name).ok());
            let Some(Object::Reference(id)) = target.cloned() else {
                cuts.push(invocation.span);
                continue;
            };
            let subtype = match doc.get_object(id) {
                Ok(Object::Stream(s)) => s.dict.get(b"Subtype").and_then(Object::as_name).ok().map(<[u8]>::to_vec),
                _ => None,
            };
            if subtype.as_deref() != Some(b"Form") {
                // An image (read by OCR, not here), or not an XObject at all.
                cuts.push(invocation.span);
                continue;
            }
            if stack.contains(&id) {
                self.warn("a form draws itself; it was drawn once");
                cuts.push(invocation.span);
                continue;
            }
            if stack.len() >= self.limits.max_nesting as usize {
                return Err(ExtractError::NestingTooDeep { limit: self.limits.max_nesting });
            }
            let form_operators = match self.form_operators.get(&id) {
                Some(&n) => n,
                None => {
                    stack.push(id);
                    let n = self.form(doc, id, resources, stack)?;
                    stack.pop();
                    self.form_operators.insert(id, n);
                    n
                }
            };
            operators = operators.saturating_add(form_operators);
            if operators > self.limits.max_operators {
                return Err(ExtractError::TooManyOperators { limit: self.limits.max_operators });
            }
        }
        Ok((cut(content, &cuts), operators))
    }

    /// Prepares a form in place (decoded, its bad `Do`s cut) and returns its operator count with its own
    /// forms expanded. A form without resources of its own uses those of what draws it, as `pdf-extract` does.
    fn form(
        &mut self,
        doc: &mut Document,
        id: ObjectId,
        outer: &Dictionary,
        stack: &mut Vec<ObjectId>,
    ) -> Result<u64, ExtractError> {
        let content = self.decode(doc, id)?.unwrap_or_default();
        let own = match doc.get_object(id) {
            Ok(Object::Stream(s)) => s.dict.get(b"Resources").ok().and_then(|r| deref(doc, r).as_dict().ok().cloned()),
            _ => None,
        };
        let resources = own.unwrap_or_else(|| outer.clone());
        self.decode_resources(doc, &resources)?;
        let (content, operators) = self.expand(doc, content, &resources, stack)?;
        if let Ok(Object::Stream(stream)) = doc.get_object_mut(id) {
            stream.set_plain_content(content);
        }
        Ok(operators)
    }

    /// Decodes in place every stream that a resource dictionary reaches (fonts' files and maps, colour
    /// profiles, patterns), but images and forms, which are drawn (or not) by `Do`.
    fn decode_resources(&mut self, doc: &mut Document, resources: &Dictionary) -> Result<(), ExtractError> {
        let mut pending: Vec<ObjectId> = Vec::new();
        let mut seen: HashSet<ObjectId> = HashSet::new();
        let visit = |object: &Object, pending: &mut Vec<ObjectId>| match object {
            Object::Reference(id) => pending.push(*id),
            Object::Array(items) => pending_refs(items.iter(), pending),
            Object::Dictionary(dict) => pending_refs(dict.iter().map(|(_, v)| v), pending),
            _ => {}
        };
        for (key, value) in resources.iter() {
            if key.as_slice() != b"XObject" {
                visit(value, &mut pending);
            }
        }
        let mut streams = Vec::new();
        while let Some(id) = pending.pop() {
            if seen.len() >= MAX_RESOURCE_NODES {
                break;
            }
            if !seen.insert(id) {
                continue;
            }
            match doc.get_object(id) {
                Ok(Object::Stream(stream)) => {
                    let subtype = stream.dict.get(b"Subtype").and_then(Object::as_name).ok();
                    if !matches!(subtype, Some(b"Image" | b"Form")) {
                        streams.push(id);
                        visit(&Object::Dictionary(stream.dict.clone()), &mut pending);
                    }
                }
                Ok(object) => visit(object, &mut pending),
                Err(_) => {}
            }
        }
        for id in streams {
            if let Some(decoded) = self.decode(doc, id)? {
                if let Ok(Object::Stream(stream)) = doc.get_object_mut(id) {
                    stream.set_plain_content(decoded);
                }
            }
        }
        Ok(())
    }

    /// A stream's decoded bytes, within the limits; `None` for an object that is not a stream. Each stream
    /// counts once towards the document's total.
    fn decode(&mut self, doc: &Document, id: ObjectId) -> Result<Option<Vec<u8>>, ExtractError> {
        let Ok(Object::Stream(stream)) = doc.get_object(id) else { return Ok(None) };
        let decoded = decode_stream(stream, self.limits.max_stream_bytes)?;
        if self.done.insert(id) && decoded.len() as u64 > stream.content.len() as u64 {
            self.decoded += decoded.len() as u64;
            if self.decoded > self.limits.max_decoded_bytes {
                return Err(ExtractError::DecodedTooLarge { limit: self.limits.max_decoded_bytes });
            }
        }
        Ok(Some(decoded))
    }

    fn warn(&mut self, warning: &str) {
        if !self.warnings.iter().any(|w| w == warning) {
            self.warnings.push(warning.to_string());
        }
    }
}

fn pending_refs<'o>(items: impl Iterator<Item = &'o Object>, pending: &mut Vec<ObjectId>) {
    for item in items {
        match item {
            Object::Reference(id) => pending.push(*id),
            // One level of direct nesting (a font dictionary inside the resources, an array of references).
            Object::Array(inner) => pending.extend(inner.iter().filter_map(|o| o.as_reference().ok())),
            Object::Dictionary(inner) => pending.extend(inner.iter().filter_map(|(_, o)| o.as_reference().ok())),
            _ => {}
        }
    }
}

fn deref<'d>(doc: &'d Document, object: &'d Object) -> &'d Object {
    match object {
        Object::Reference(id) => doc.get_object(*id).unwrap_or(object),
        _ => object,
    }
}

/// The stream's bytes with its filters undone, at most `max` of them. Flate is inflated here, leniently (a
/// stream cut short keeps what it holds) and with the cap applied while inflating; other filters (rare in
/// content) go through lopdf, and their result is measured after.
pub(crate) fn decode_stream(stream: &Stream, max: u64) -> Result<Vec<u8>, ExtractError> {
    let too_large = || ExtractError::StreamTooLarge { limit: max };
    let Ok(filters) = stream.filters() else { return Ok(stream.content.clone()) };
    let predictor = predictor(stream);
    let decoded = match filters.as_slice() {
        [] => stream.content.clone(),
        [b"FlateDecode" | b"Fl"] if predictor <= 1 => inflate(&stream.content, max)?,
        _ => {
            if matches!(filters.first(), Some(&(b"FlateDecode" | b"Fl"))) {
                // Measure first: the predictor's output is no larger than the inflated bytes.
                inflate(&stream.content, max)?;
            }
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stream.decompressed_content()))
                .ok()
                .and_then(Result::ok)
                .unwrap_or_else(|| stream.content.clone())
        }
    };
    if decoded.len() as u64 > max {
        return Err(too_large());
    }
    Ok(decoded)
}

/// The PNG or TIFF predictor a stream's `/DecodeParms` name (1: none).
pub(crate) fn predictor(stream: &Stream) -> i64 {
    stream
        .dict
        .get(b"DecodeParms")
        .and_then(Object::as_dict)
        .and_then(|p| p.get(b"Predictor"))
        .and_then(Object::as_i64)
        .unwrap_or(1)
}

/// Inflates a Flate stream leniently ([`crate::inflate`]); more than `max` bytes is
/// [`ExtractError::StreamTooLarge`].
fn inflate(data: &[u8], max: u64) -> Result<Vec<u8>, ExtractError> {
    crate::inflate::inflate_lenient(data, max).map_err(|_| ExtractError::StreamTooLarge { limit: max })
}

/// The content with the byte ranges `cuts` (in order, not overlapping) left out; each cut leaves a space so
/// that the tokens around it stay apart.
fn cut(content: Vec<u8>, cuts: &[std::ops::Range<usize>]) -> Vec<u8> {
    if cuts.is_empty() {
        return content;
    }
    let mut out = Vec::with_capacity(content.len());
    let mut at = 0;
    for span in cuts {
        out.extend_from_slice(&content[at..span.start]);
        out.push(b' ');
        at = span.end;
    }
    out.extend_from_slice(&content[at..]);
    out
}

fn is_space(b: u8) -> bool {
    matches!(b, b'\0' | b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

fn is_delimiter(b: u8) -> bool {
    matches!(b, b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%')
}

/// Counts a content stream's operators and finds its `Do`s, in one pass and without building operands.
fn lex(content: &[u8]) -> Lexed {
    let mut lexed = Lexed { operators: 0, invocations: Vec::new() };
    // The last operand, when it was a name: where it starts and what it is.
    let mut last_name: Option<(usize, &[u8])> = None;
    let mut i = 0;
    let n = content.len();
    while i < n {
        let b = content[i];
        if is_space(b) {
            i += 1;
            continue;
        }
        let start = i;
        match b {
            b'%' => {
                while i < n && content[i] != b'\n' && content[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'(' => {
                let mut depth = 0usize;
                while i < n {
                    match content[i] {
                        b'\\' => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                last_name = None;
            }
            b'<' if content.get(i + 1) == Some(&b'<') => {
                i += 2;
                last_name = None;
            }
            b'>' if content.get(i + 1) == Some(&b'>') => {
                i += 2;
                last_name = None;
            }
            b'<' => {
                while i < n && content[i] != b'>' {
                    i += 1;
                }
                i += 1;
                last_name = None;
            }
            b'[' | b']' | b'{' | b'}' | b')' | b'>' => {
                i += 1;
                last_name = None;
            }
            b'/' => {
                i += 1;
                while i < n && !is_space(content[i]) && !is_delimiter(content[i]) {
                    i += 1;
                }
                last_name = Some((start, &content[start + 1..i]));
            }
            _ => {
                while i < n && !is_space(content[i]) && !is_delimiter(content[i]) {
                    i += 1;
                }
                let token = &content[start..i];
                let numeric = token.iter().all(|c| c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.'));
                if numeric || matches!(token, b"true" | b"false" | b"null") {
                    last_name = None;
                    continue;
                }
                lexed.operators += 1;
                if token == b"Do" {
                    if let Some((name_start, name)) = last_name {
                        lexed.invocations.push(Invocation { name: name.to_vec(), span: name_start..i });
                    }
                } else if token == b"ID" {
                    // Inline image data runs to an `EI` between white space.
                    i += 1;
                    while i + 2 <= n {
                        if &content[i..i + 2] == b"EI"
                            && is_space(content[i - 1])
                            && content.get(i + 2).is_none_or(|&c| is_space(c))
                        {
                            break;
                        }
                        i += 1;
                    }
                }
                last_name = None;
            }
        }
    }
    lexed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lexer_counts_operators_and_finds_each_do() {
        let content = b"q 1 0 0 1 0 0 cm /Im1 Do Q BT /F1 12 Tf (a (nested) Do) Tj ET /Fm0 Do % /X Do\n";
        let lexed = lex(content);
        // q cm Do Q BT Tf Tj ET Do: the string's and the comment's `Do` are not operators.
        assert_eq!(lexed.operators, 9);
        let names: Vec<&[u8]> = lexed.invocations.iter().map(|i| i.name.as_slice()).collect();
        assert_eq!(names, [b"Im1".as_slice(), b"Fm0".as_slice()]);
        assert_eq!(&content[lexed.invocations[0].span.clone()], b"/Im1 Do");
    }

    #[test]
    fn inline_image_data_is_not_lexed() {
        let lexed = lex(b"BI /W 2 /H 1 ID \x00Do Tj EI Q\n");
        // BI, ID, EI and Q; the data's bytes hold no operator.
        assert_eq!(lexed.operators, 4);
        assert!(lexed.invocations.is_empty());
    }

    #[test]
    fn a_cut_leaves_the_tokens_around_it_apart() {
        // Two cuts, the second at the end: each leaves one space.
        assert_eq!(cut(b"q /Im1 Do Q /Im2 Do".to_vec(), &[2..9, 12..19]), b"q   Q  ");
    }
}
