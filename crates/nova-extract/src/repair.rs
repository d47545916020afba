//! Reading damaged PDFs: when a PDF's cross-reference information is missing or lies, its objects are found
//! by scanning the bytes, as PDF readers do.
//!
//! A PDF's cross-reference table gives the byte offset of every object, and `lopdf` reads objects only
//! through it. A file cut short (an interrupted download) has lost its table, and bytes inserted or removed
//! anywhere make the offsets lie, so `lopdf` fails on files whose objects are still all there. [`load`]
//! then rebuilds the document: it finds every `N G obj` in the bytes (streams end at their `endstream`, and
//! a stream cut off by the end of the file keeps what is there), writes them into a fresh file with an exact
//! table and correct `/Length`s, and has `lopdf` load that. Object streams are unpacked here rather than by
//! `lopdf`, so that of two definitions of an object the later one in the file wins, as with incremental
//! updates, wherever each was stored; an object whose later definition does not parse keeps its earlier
//! one. The catalog is the trailer's `/Root`, else the last `/Type /Catalog`, else a catalog is made for
//! the page tree's root, else for the pages found loose.
//!
//! Flate streams that end early are inflated as far as they go and stored decoded: a content stream cut off
//! by the end of the file still holds most of the page's text. Objects that are gone (cut off, or
//! unreadable) are read as the specification says, as null: references to them are dropped, and a lost font
//! shows nothing, so that the rest of its page still reads.
//!
//! Everything is bounded: the scan is linear in the file's size, at most [`MAX_OBJECTS`] objects are
//! considered, no walk recurses on the document's structure, and inflated streams are capped.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};

use lopdf::xref::XrefEntry;
use lopdf::{dictionary, Dictionary, Document, LoadOptions, Object, ObjectId, ObjectStream};

use crate::ExtractError;

/// The warning an invoice read from a repaired PDF carries: some of the document may be missing.
pub(crate) const REPAIRED_WARNING: &str = "the PDF was damaged and repaired (its cross-reference table was \
     rebuilt from the objects found in the file, or objects it lists were unreadable): some of its content may \
     be missing";

/// Objects considered in a scan: far more than any invoice holds, few enough to bound the work.
const MAX_OBJECTS: usize = 1_000_000;
/// Largest output of a Flate stream inflated during repair.
const MAX_INFLATED_BYTES: usize = 64 * 1024 * 1024;
/// Trailer dictionaries looked at, the last ones in the file: only the latest revisions matter.
const MAX_TRAILERS: usize = 16;
/// Longest trailer dictionary looked at; a real one is a few hundred bytes.
const MAX_TRAILER_BYTES: usize = 64 * 1024;
/// Loose pages gathered into a page tree when the document has none.
const MAX_LOOSE_PAGES: usize = 10_000;
/// Whitespace skipped between the tokens of an object header; real files put one space there.
const MAX_HEADER_GAP: usize = 64;
/// Digits of an object number or generation in a header.
const MAX_HEADER_DIGITS: usize = 10;
/// The type object streams carry while `lopdf` loads the rebuilt file, so that it leaves them packed.
const PACKED_TYPE: &[u8] = b"NovaRepairObjStm";

/// The document to read, and whether it was repaired. That is `loaded`, `lopdf`'s reading of `bytes` through
/// their own cross-reference information, unless it failed, holds no catalog with pages, or lost objects its
/// table lists. Then the file is damaged, and the document is the one rebuilt from a scan of the bytes when
/// that has a catalog with pages (and, when `loaded` reads, more objects than it), else `loaded` if it reads;
/// either way references to objects that are gone are dropped ([`drop_dangling_references`]). It counts as
/// repaired when it was rebuilt or a reference was dropped. When neither reads, `loaded` is returned as it
/// was, so its error stands.
pub(crate) fn load(bytes: &[u8], loaded: Result<Document, ExtractError>) -> Result<(Document, bool), ExtractError> {
    let usable_as_loaded = loaded.as_ref().is_ok_and(usable);
    // A document still encrypted after loading needs a password: its objects are not there to be counted.
    let encrypted = loaded.as_ref().is_ok_and(Document::is_encrypted);
    if encrypted || (usable_as_loaded && !loaded.as_ref().is_ok_and(lost_objects)) {
        return loaded.map(|doc| (doc, false));
    }
    let rebuilt = catch_unwind(AssertUnwindSafe(|| rebuild(bytes))).ok().flatten().filter(usable);
    let (mut doc, was_rebuilt) = match (loaded, rebuilt) {
        (Ok(doc), Some(rebuilt)) if usable_as_loaded => {
            if rebuilt.objects.len() > doc.objects.len() {
                (rebuilt, true)
            } else {
                (doc, false)
            }
        }
        (_, Some(rebuilt)) => (rebuilt, true),
        (Ok(doc), None) if usable_as_loaded => (doc, false),
        (loaded, None) => return loaded.map(|doc| (doc, false)),
    };
    // Until `PdfFile::open` decrypts a rebuilt encrypted document, the objects packed in its object streams
    // are ciphertext, and references to them would look dangling.
    let dropped = if doc.is_encrypted() { 0 } else { drop_dangling_references(&mut doc) };
    Ok((doc, was_rebuilt || dropped > 0))
}

/// Whether a document has a catalog and at least one page.
fn usable(doc: &Document) -> bool {
    doc.catalog().is_ok() && catch_unwind(AssertUnwindSafe(|| doc.page_iter().next().is_some())).unwrap_or(false)
}

/// Whether objects that the cross-reference information lists failed to load: offsets that lie.
fn lost_objects(doc: &Document) -> bool {
    let listed = doc
        .reference_table
        .entries
        .values()
        .filter(|entry| matches!(entry, XrefEntry::Normal { .. } | XrefEntry::Compressed { .. }))
        .count();
    doc.objects.len() < listed
}

/// Removes references to objects the document does not have. The specification reads such a reference as
/// the null object, and a dictionary entry whose value is null as no entry, where `pdf-extract` stops at the
/// first one it follows (a font's lost file, a lost colour space). So a dictionary entry is dropped, an array
/// item becomes null, and a font a page names but lost becomes one that shows nothing ([`blank_font`]): the
/// page's other text still reads, as in readers that skip text whose font is gone. Returns how many
/// references were dropped.
fn drop_dangling_references(doc: &mut Document) -> usize {
    let mut present: HashSet<ObjectId> = doc.objects.keys().copied().collect();
    // The font resource dictionaries that are objects of their own, and whether any font is lost.
    let mut font_objects: HashSet<ObjectId> = HashSet::new();
    let mut lost_font = false;
    for object in doc.objects.values() {
        // Explicit stacks here and below: nesting is the file's to choose.
        let mut pending: Vec<&Object> = vec![object];
        while let Some(object) = pending.pop() {
            let dict = match object {
                Object::Array(items) => {
                    pending.extend(items);
                    continue;
                }
                Object::Dictionary(dict) => dict,
                Object::Stream(stream) => &stream.dict,
                _ => continue,
            };
            match dict.get(b"Font") {
                Ok(Object::Reference(id)) => {
                    font_objects.insert(*id);
                }
                Ok(Object::Dictionary(fonts)) => lost_font |= fonts.iter().any(|(_, f)| is_dangling(f, &present)),
                _ => {}
            }
            pending.extend(dict.iter().map(|(_, value)| value));
        }
    }
    lost_font |= font_objects.iter().any(|id| {
        doc.objects
            .get(id)
            .and_then(|o| o.as_dict().ok())
            .is_some_and(|fonts| fonts.iter().any(|(_, f)| is_dangling(f, &present)))
    });
    let blank = lost_font.then(|| {
        doc.max_id = highest_number(doc);
        blank_font(doc)
    });
    present.extend(doc.objects.keys().copied());

    let mut dropped = 0;
    for (id, object) in doc.objects.iter_mut() {
        // Each value with whether it is a font resource dictionary.
        let mut pending: Vec<(&mut Object, bool)> = vec![(object, font_objects.contains(id))];
        while let Some((object, fonts)) = pending.pop() {
            let dict = match object {
                Object::Array(items) => {
                    for item in items.iter_mut() {
                        if is_dangling(item, &present) {
                            *item = Object::Null;
                            dropped += 1;
                        } else {
                            pending.push((item, false));
                        }
                    }
                    continue;
                }
                Object::Dictionary(dict) => dict,
                Object::Stream(stream) => &mut stream.dict,
                _ => continue,
            };
            let lost: Vec<Vec<u8>> =
                dict.iter().filter(|(_, value)| is_dangling(value, &present)).map(|(key, _)| key.clone()).collect();
            dropped += lost.len();
            for key in lost {
                match blank {
                    Some(blank) if fonts => dict.set(key, blank),
                    _ => {
                        dict.remove(&key);
                    }
                }
            }
            for (key, value) in dict.iter_mut() {
                let is_fonts = key == b"Font" && matches!(value, Object::Dictionary(_));
                pending.push((value, is_fonts));
            }
        }
    }
    dropped
}

/// The highest object number the document defines or refers to: objects added after it take no number
/// that a dangling reference would then point to.
fn highest_number(doc: &Document) -> u32 {
    let mut highest = 0;
    for (id, object) in &doc.objects {
        highest = highest.max(id.0);
        let mut pending: Vec<&Object> = vec![object];
        while let Some(object) = pending.pop() {
            match object {
                Object::Reference(id) => highest = highest.max(id.0),
                Object::Array(items) => pending.extend(items),
                Object::Dictionary(dict) => pending.extend(dict.iter().map(|(_, value)| value)),
                Object::Stream(stream) => pending.extend(stream.dict.iter().map(|(_, value)| value)),
                _ => {}
            }
        }
    }
    highest
}

fn is_dangling(object: &Object, present: &HashSet<ObjectId>) -> bool {
    matches!(object, Object::Reference(id) if !present.contains(id))
}

/// A font that shows every character as a space: Helvetica, whose `/ToUnicode` map sends each byte to
/// U+0020. It stands in for a lost font, so that the text drawn with it is skipped and the layout keeps its
/// gaps.
fn blank_font(doc: &mut Document) -> ObjectId {
    let mut cmap = String::from(
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n/CMapName /Blank def\n/CMapType 2 def\n\
         1 begincodespacerange\n<00> <FF>\nendcodespacerange\n256 beginbfchar\n",
    );
    for code in 0..=255u8 {
        cmap.push_str(&format!("<{code:02X}> <0020>\n"));
    }
    cmap.push_str("endbfchar\nendcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n");
    let to_unicode = doc.add_object(lopdf::Stream::new(Dictionary::new(), cmap.into_bytes()));
    doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica",
        "ToUnicode" => to_unicode,
    })
}

/// The document rebuilt from a scan of `bytes`; `None` when no object is found or `lopdf` cannot load the
/// rebuilt file.
fn rebuild(bytes: &[u8]) -> Option<Document> {
    let scan = Scan::of(bytes);
    if scan.objects.is_empty() {
        return None;
    }
    let rebuilt = scan.write(bytes)?;
    let options = LoadOptions { filter: Some(keep_object_streams_packed), ..LoadOptions::default() };
    let mut doc = Document::load_mem_with_options(&rebuilt, options).ok()?;
    let mut loaded = std::mem::take(&mut doc.objects);

    // The trailers, in file order: the classic ones and the dictionaries of cross-reference streams.
    let mut trailers: Vec<(usize, Dictionary)> = Vec::new();
    for (i, found) in scan.objects.iter().enumerate() {
        if let Some(Object::Stream(stream)) = loaded.get(&emitted_id(i)) {
            if stream.dict.has_type(b"XRef") {
                trailers.push((found.at, stream.dict.clone()));
            }
        }
    }
    for (j, at) in scan.trailers.iter().map(|t| t.start).enumerate() {
        if let Some(Object::Dictionary(dict)) = loaded.remove(&emitted_id(scan.objects.len() + j)) {
            trailers.push((at, dict));
        }
    }
    trailers.sort_by_key(|(at, _)| *at);

    // Streams of an encrypted document are ciphertext until `PdfFile::open` decrypts them.
    if !trailers.iter().any(|(_, t)| t.has(b"Encrypt")) {
        for object in loaded.values_mut() {
            if let Object::Stream(stream) = object {
                inflate_cut_stream(stream);
            }
        }
    }

    let (objects, positions) = resolve(&scan, loaded);
    doc.objects = objects;
    doc.max_id = highest_number(&doc);
    doc.trailer = new_trailer(&mut doc, &trailers, &positions)?;
    Some(doc)
}

/// One object found in the bytes.
struct Found {
    id: ObjectId,
    /// Where its header starts: later definitions win.
    at: usize,
    body: Body,
}

enum Body {
    /// A non-stream object's text, between `obj` and `endobj`.
    Plain(Range<usize>),
    /// A stream's dictionary (from `<<` to `>>`) and its data.
    Stream { dict: Range<usize>, data: Range<usize> },
}

/// What a scan of the bytes found: objects and trailer dictionaries, in file order.
struct Scan {
    objects: Vec<Found>,
    trailers: Vec<Range<usize>>,
    version: String,
}

impl Scan {
    fn of(bytes: &[u8]) -> Scan {
        let headers = object_headers(bytes);
        let endstreams = keyword_positions(bytes, b"endstream");
        let endobjs = keyword_positions(bytes, b"endobj");
        let mut objects = Vec::new();
        // Headers before `resume` lie inside the data of a stream already read.
        let mut resume = 0;
        for (k, &(id, at, body_start)) in headers.iter().enumerate() {
            if at < resume {
                continue;
            }
            // Headers come in file order, each after the previous one's `obj`.
            let next_header = headers.get(k + 1).map(|h| h.1);
            let limit = next_header.unwrap_or(bytes.len());
            let start = skip_space(bytes, body_start, limit);
            let dict_end =
                if bytes.get(start..start + 2) == Some(b"<<") { dict_end(bytes, start, limit) } else { None };
            let stream_data = dict_end.and_then(|end| stream_data_start(bytes, end, limit));
            let body = match (dict_end, stream_data) {
                (Some(dict_end), Some(data_start)) => {
                    let dict = start..dict_end;
                    let dict_bytes = bytes.get(dict.clone()).unwrap_or_default();
                    let (data, after) = stream_extent(bytes, dict_bytes, data_start, next_header, &endstreams);
                    resume = after;
                    Body::Stream { dict, data }
                }
                _ => {
                    let end = first_at_or_after(&endobjs, body_start).filter(|&e| e < limit).unwrap_or(limit);
                    resume = end;
                    Body::Plain(body_start..end)
                }
            };
            objects.push(Found { id, at, body });
        }
        let trailers = keyword_positions(bytes, b"trailer")
            .iter()
            .rev()
            .take(MAX_TRAILERS)
            .rev()
            .filter_map(|&at| {
                let start = skip_space(bytes, at + b"trailer".len(), bytes.len());
                let limit = bytes.len().min(start.saturating_add(MAX_TRAILER_BYTES));
                (bytes.get(start..start + 2) == Some(b"<<"))
                    .then(|| dict_end(bytes, start, limit))
                    .flatten()
                    .map(|end| start..end)
            })
            .collect();
        Scan { objects, trailers, version: header_version(bytes) }
    }

    /// A fresh PDF holding every object found, each under its own number ([`emitted_id`]; the trailers
    /// follow the objects), streams with their true `/Length`, and an exact cross-reference table.
    fn write(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(bytes.len() + 64 * (self.objects.len() + self.trailers.len()) + 1024);
        out.extend_from_slice(format!("%PDF-{}\n%\u{e2}\u{e3}\u{cf}\u{d3}\n", self.version).as_bytes());
        let mut offsets = Vec::with_capacity(self.objects.len() + self.trailers.len());
        for found in &self.objects {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n", offsets.len()).as_bytes());
            match &found.body {
                Body::Plain(range) => out.extend_from_slice(bytes.get(range.clone())?),
                Body::Stream { dict, data } => {
                    // A later `/Length` key overrides an earlier one, so the dictionary keeps its other keys
                    // as written and gets the length of the data actually found.
                    let dict = bytes.get(dict.clone())?;
                    out.extend_from_slice(dict.get(..dict.len().saturating_sub(2))?);
                    out.extend_from_slice(format!(" /Length {}>>\nstream\n", data.len()).as_bytes());
                    out.extend_from_slice(bytes.get(data.clone())?);
                    out.extend_from_slice(b"\nendstream");
                }
            }
            out.extend_from_slice(b"\nendobj\n");
        }
        for trailer in &self.trailers {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n", offsets.len()).as_bytes());
            out.extend_from_slice(bytes.get(trailer.clone())?);
            out.extend_from_slice(b"\nendobj\n");
        }
        let xref_at = out.len();
        out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", offsets.len() + 1).as_bytes());
        for offset in offsets.iter() {
            // The table's offsets have ten digits; a rebuilt file larger than that is not read.
            if *offset >= 10_000_000_000 {
                return None;
            }
            out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!("trailer\n<< /Size {} >>\nstartxref\n{xref_at}\n%%EOF\n", offsets.len() + 1).as_bytes(),
        );
        Some(out)
    }
}

/// The number an object found at index `i` of a scan gets in the rebuilt file.
fn emitted_id(i: usize) -> ObjectId {
    (u32::try_from(i + 1).unwrap_or(u32::MAX), 0)
}

/// Keeps `lopdf` from unpacking object streams while it loads the rebuilt file: [`resolve`] unpacks them,
/// so that later definitions win. The object is changed in place; `lopdf` 0.42 keeps that one and uses the
/// returned copy only for objects inside object streams, so both carry the change.
fn keep_object_streams_packed(id: ObjectId, object: &mut Object) -> Option<(ObjectId, Object)> {
    if let Object::Stream(stream) = object {
        if stream.dict.has_type(b"ObjStm") {
            stream.dict.set("Type", Object::Name(PACKED_TYPE.to_vec()));
        }
    }
    Some((id, object.clone()))
}

/// The document's objects: for each object number, the last definition in the file that loaded, whether
/// written directly or packed in an object stream. Also where each winning definition was found.
fn resolve(
    scan: &Scan,
    mut loaded: std::collections::BTreeMap<ObjectId, Object>,
) -> (std::collections::BTreeMap<ObjectId, Object>, HashMap<ObjectId, usize>) {
    // (position, order within the position, id, object)
    let mut definitions: Vec<(usize, usize, ObjectId, Object)> = Vec::new();
    for (i, found) in scan.objects.iter().enumerate() {
        let Some(mut object) = loaded.remove(&emitted_id(i)) else { continue };
        if let Object::Stream(stream) = &mut object {
            if stream.dict.has_type(PACKED_TYPE) {
                stream.dict.set("Type", Object::Name(b"ObjStm".to_vec()));
                let packed = catch_unwind(AssertUnwindSafe(|| ObjectStream::new(&mut stream.clone())))
                    .ok()
                    .and_then(Result::ok)
                    .map(|s| s.objects)
                    .unwrap_or_default();
                for (k, (id, object)) in packed.into_iter().enumerate() {
                    if definitions.len() >= MAX_OBJECTS {
                        break;
                    }
                    definitions.push((found.at, k + 1, id, object));
                }
            }
        }
        if definitions.len() < MAX_OBJECTS {
            definitions.push((found.at, 0, found.id, object));
        }
    }
    definitions.sort_by_key(|(at, order, _, _)| (*at, *order));
    let mut latest: HashMap<u32, (ObjectId, usize, Object)> = HashMap::new();
    for (at, _, id, object) in definitions {
        latest.insert(id.0, (id, at, object));
    }
    let mut objects = std::collections::BTreeMap::new();
    let mut positions = HashMap::new();
    for (_, (id, at, object)) in latest {
        positions.insert(id, at);
        objects.insert(id, object);
    }
    (objects, positions)
}

/// The trailer of the rebuilt document: `/Root` from the latest trailer whose root is a catalog, else the
/// last catalog found, else a catalog made for the page tree's root, else one made for the loose pages;
/// `/Info`, `/Encrypt` and `/ID` from the same trailer (or the latest one). `None` without any page.
fn new_trailer(
    doc: &mut Document,
    trailers: &[(usize, Dictionary)],
    positions: &HashMap<ObjectId, usize>,
) -> Option<Dictionary> {
    let is_catalog = |doc: &Document, id: ObjectId| {
        doc.get_dictionary(id)
            .is_ok_and(|d| d.get(b"Pages").and_then(Object::as_reference).is_ok_and(|p| doc.get_dictionary(p).is_ok()))
    };
    let from_trailer = trailers.iter().rev().find_map(|(_, trailer)| {
        let root = trailer.get(b"Root").and_then(Object::as_reference).ok()?;
        is_catalog(doc, root).then_some((root, trailer))
    });
    let source = from_trailer.map(|(_, t)| t).or_else(|| trailers.last().map(|(_, t)| t));
    let latest = |doc: &Document, wanted: &dyn Fn(&Dictionary) -> bool| {
        doc.objects
            .iter()
            .filter(|(_, o)| o.as_dict().is_ok_and(wanted))
            .max_by_key(|(id, _)| positions.get(id).copied().unwrap_or(0))
            .map(|(id, _)| *id)
    };
    let root = match from_trailer {
        Some((root, _)) => root,
        None => match latest(doc, &|d| d.has_type(b"Catalog")).filter(|id| is_catalog(doc, *id)) {
            Some(catalog) => catalog,
            None => {
                let pages = match latest(doc, &|d| d.has_type(b"Pages") && !d.has(b"Parent")) {
                    Some(tree) => tree,
                    None => loose_page_tree(doc, positions)?,
                };
                doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages })
            }
        },
    };
    let mut trailer = dictionary! { "Root" => root, "Size" => i64::from(doc.max_id) + 1 };
    for key in [b"Info".as_slice(), b"Encrypt", b"ID"] {
        if let Some(value) = source.and_then(|t| t.get(key).ok()) {
            trailer.set(key.to_vec(), value.clone());
        }
    }
    Some(trailer)
}

/// A page tree made of the pages found loose (`/Type /Page`), in file order; `None` when there are none.
/// A page whose parent is lost gets the new tree as its parent, so that inherited lookups end there.
fn loose_page_tree(doc: &mut Document, positions: &HashMap<ObjectId, usize>) -> Option<ObjectId> {
    let mut pages: Vec<(usize, ObjectId)> = doc
        .objects
        .iter()
        .filter(|(_, o)| o.as_dict().is_ok_and(|d| d.has_type(b"Page")))
        .map(|(id, _)| (positions.get(id).copied().unwrap_or(0), *id))
        .take(MAX_LOOSE_PAGES)
        .collect();
    if pages.is_empty() {
        return None;
    }
    pages.sort();
    let tree = doc.new_object_id();
    for (_, page) in &pages {
        let parent = doc.get_dictionary(*page).ok().and_then(|d| d.get(b"Parent").and_then(Object::as_reference).ok());
        if parent.is_none_or(|p| doc.get_dictionary(p).is_err()) {
            if let Ok(dict) = doc.get_dictionary_mut(*page) {
                dict.set("Parent", tree);
            }
        }
    }
    let kids: Vec<Object> = pages.iter().map(|(_, id)| Object::Reference(*id)).collect();
    let count = i64::try_from(kids.len()).unwrap_or(i64::MAX);
    doc.objects.insert(tree, Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count }));
    Some(tree)
}

/// Replaces the data of a Flate stream that ends early (cut off, or corrupt part-way) with what inflates of
/// it, and drops the filter: `lopdf` would otherwise hand the compressed bytes on. Images are left to the
/// image decoder, and streams with a predictor (whose partial rows cannot be undone here) as they are.
fn inflate_cut_stream(stream: &mut lopdf::Stream) {
    let flate = match stream.dict.get(b"Filter") {
        Ok(Object::Name(name)) => name == b"FlateDecode" || name == b"Fl",
        Ok(Object::Array(names)) => {
            matches!(names.as_slice(), [Object::Name(name)] if name == b"FlateDecode" || name == b"Fl")
        }
        _ => false,
    };
    let predictor = crate::prepare::predictor(stream);
    let image = stream.dict.get(b"Subtype").and_then(Object::as_name).is_ok_and(|s| s == b"Image");
    if !flate || predictor > 1 || image {
        return;
    }
    if let Some(partial) = inflate_partial(&stream.content) {
        stream.dict.remove(b"Filter");
        stream.dict.remove(b"DecodeParms");
        stream.set_content(partial);
    }
}

/// What inflates of zlib data that ends early or turns corrupt part-way; `None` when the data is a whole
/// stream (the normal decoder reads it), yields nothing, or inflates past [`MAX_INFLATED_BYTES`].
fn inflate_partial(data: &[u8]) -> Option<Vec<u8>> {
    use crate::inflate::{inflate, inflate_lenient, Inflated};
    let max = MAX_INFLATED_BYTES as u64;
    match inflate(data, true, max).ok()? {
        Inflated::Complete(_) => None,
        Inflated::Partial(_) => inflate_lenient(data, max).ok().filter(|out| !out.is_empty()),
    }
}

/// Every `N G obj` header in the bytes, in order, as (id, where its first digit is, where its body starts),
/// at most [`MAX_OBJECTS`].
fn object_headers(bytes: &[u8]) -> Vec<(ObjectId, usize, usize)> {
    let mut headers = Vec::new();
    for at in keyword_positions(bytes, b"obj") {
        if headers.len() >= MAX_OBJECTS {
            break;
        }
        // `endobj` ends with `obj` too.
        if at >= 3 && bytes.get(at - 3..at) == Some(b"end") {
            continue;
        }
        let Some((generation, gen_start)) = number_before(bytes, at) else { continue };
        let Some((number, start)) = number_before(bytes, gen_start) else { continue };
        if start > 0 && bytes.get(start - 1).is_some_and(|&b| is_regular(b)) {
            continue;
        }
        let (Ok(number), Ok(generation)) = (u32::try_from(number), u16::try_from(generation)) else { continue };
        headers.push(((number, generation), start, at + 3));
    }
    headers
}

/// The unsigned number that ends, after at least one whitespace byte, just before `end`, and where its
/// first digit is.
fn number_before(bytes: &[u8], end: usize) -> Option<(u64, usize)> {
    let mut i = end;
    while i > 0 && end - i < MAX_HEADER_GAP && bytes.get(i - 1).is_some_and(|b| is_space(*b)) {
        i -= 1;
    }
    if i == end {
        return None;
    }
    let digits_end = i;
    while i > 0 && digits_end - i < MAX_HEADER_DIGITS && bytes.get(i - 1).is_some_and(u8::is_ascii_digit) {
        i -= 1;
    }
    if i == digits_end {
        return None;
    }
    let digits = std::str::from_utf8(bytes.get(i..digits_end)?).ok()?;
    Some((digits.parse().ok()?, i))
}

/// Where `keyword` occurs as a whole token (not inside a longer name or word), in order.
fn keyword_positions(bytes: &[u8], keyword: &[u8]) -> Vec<usize> {
    let Some(&first) = keyword.first() else { return Vec::new() };
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(offset) = bytes.get(i..).and_then(|rest| rest.iter().position(|&b| b == first)) {
        let at = i + offset;
        // Only the end is checked: damaged writers run `endstream` into the data before it.
        if bytes.get(at..at + keyword.len()) == Some(keyword)
            && !bytes.get(at + keyword.len()).is_some_and(|&b| is_regular(b))
        {
            found.push(at);
        }
        i = at + 1;
    }
    found
}

/// The first of the sorted `positions` at or after `at`.
fn first_at_or_after(positions: &[usize], at: usize) -> Option<usize> {
    positions.get(positions.partition_point(|&p| p < at)).copied()
}

/// Where the dictionary that starts at `start` (on `<<`) ends, just after its `>>`; `None` when it does not
/// end before `limit`. Strings and comments are skipped, so a `>>` inside them does not count.
fn dict_end(bytes: &[u8], start: usize, limit: usize) -> Option<usize> {
    let limit = limit.min(bytes.len());
    let mut depth = 0usize;
    let mut i = start;
    while i < limit {
        match bytes[i] {
            b'<' if bytes.get(i + 1) == Some(&b'<') => {
                depth += 1;
                i += 2;
            }
            b'>' if bytes.get(i + 1) == Some(&b'>') => {
                depth = depth.checked_sub(1)?;
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            }
            // A hexadecimal string.
            b'<' => i = i + 1 + bytes.get(i + 1..limit)?.iter().position(|&b| b == b'>')? + 1,
            b'(' => i = literal_string_end(bytes, i, limit)?,
            b'%' => i += bytes.get(i..limit)?.iter().position(|&b| b == b'\n' || b == b'\r').unwrap_or(limit - i),
            _ => i += 1,
        }
    }
    None
}

/// Just after the literal string that starts at `start` (on its `(`): parentheses nest, a backslash escapes.
fn literal_string_end(bytes: &[u8], start: usize, limit: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < limit {
        match bytes[i] {
            b'\\' => i += 1,
            b'(' => depth += 1,
            b')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Where a stream's data starts when the `stream` keyword follows its dictionary (which ends at
/// `dict_end`): after the end of the keyword's line.
fn stream_data_start(bytes: &[u8], dict_end: usize, limit: usize) -> Option<usize> {
    let keyword = skip_space(bytes, dict_end, limit);
    if bytes.get(keyword..keyword + 6) != Some(b"stream") {
        return None;
    }
    let mut i = keyword + 6;
    while i < limit && matches!(bytes.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    match bytes.get(i..) {
        Some([b'\r', b'\n', ..]) => Some(i + 2),
        Some([b'\n' | b'\r', ..]) => Some(i + 1),
        _ => Some(i),
    }
}

/// A stream's data and where scanning resumes after it. The declared `/Length` when it lands on
/// `endstream`; else up to the first `endstream`, unless the next object's header comes first (the stream
/// lost its end: its data stops there); else, cut off by the end of the file, everything up to the end.
fn stream_extent(
    bytes: &[u8],
    dict: &[u8],
    start: usize,
    next_header: Option<usize>,
    endstreams: &[usize],
) -> (Range<usize>, usize) {
    if let Some(end) = declared_length(dict).and_then(|length| start.checked_add(length)) {
        let keyword = skip_space(bytes, end, bytes.len().min(end.saturating_add(8)));
        if end <= bytes.len() && bytes.get(keyword..keyword + 9) == Some(b"endstream") {
            return (start..end, keyword + 9);
        }
    }
    match (first_at_or_after(endstreams, start), next_header) {
        (Some(end), header) if header.is_none_or(|h| end < h) => (start..trim_eol(bytes, start, end), end + 9),
        (_, Some(header)) => (start..header, header),
        (_, None) => (start..bytes.len(), bytes.len()),
    }
}

/// A direct `/Length` of a stream dictionary; an indirect one cannot be trusted in a damaged file.
fn declared_length(dict: &[u8]) -> Option<usize> {
    // Not `/Length1` and the like.
    let key = dict
        .windows(7)
        .enumerate()
        .find(|(i, w)| *w == b"/Length" && !dict.get(i + 7).is_some_and(|&b| is_regular(b)))
        .map(|(i, _)| i + 7)?;
    let start = skip_space(dict, key, dict.len());
    let digits = dict.get(start..)?.iter().take_while(|b| b.is_ascii_digit()).count();
    let after = skip_space(dict, start + digits, dict.len());
    // `N G R` is a reference.
    if dict.get(after).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(dict.get(start..start + digits)?).ok()?.parse().ok()
}

/// `end` moved back over the end-of-line that precedes `endstream`, not before `start`.
fn trim_eol(bytes: &[u8], start: usize, end: usize) -> usize {
    let mut end = end;
    if end > start && bytes.get(end - 1) == Some(&b'\n') {
        end -= 1;
    }
    if end > start && bytes.get(end - 1) == Some(&b'\r') {
        end -= 1;
    }
    end
}

/// The first position from `at` that is not whitespace or a comment, at most `limit`.
fn skip_space(bytes: &[u8], at: usize, limit: usize) -> usize {
    let limit = limit.min(bytes.len());
    let mut i = at;
    while i < limit {
        match bytes[i] {
            b if is_space(b) => i += 1,
            b'%' => {
                while i < limit && !matches!(bytes[i], b'\n' | b'\r') {
                    i += 1;
                }
            }
            _ => break,
        }
    }
    i
}

/// The version in the file's `%PDF-x.y` header, `1.7` when there is none.
fn header_version(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(1024)];
    head.windows(5)
        .position(|w| w == b"%PDF-")
        .and_then(|at| {
            let digits: Vec<u8> =
                head.get(at + 5..)?.iter().copied().take(8).take_while(|b| b.is_ascii_digit() || *b == b'.').collect();
            let version = String::from_utf8(digits).ok()?;
            (version.len() >= 3 && version.contains('.')).then_some(version)
        })
        .unwrap_or_else(|| "1.7".to_string())
}

/// PDF whitespace.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'\0')
}

/// A byte that is part of a name, number or keyword: not whitespace and not a delimiter.
fn is_regular(b: u8) -> bool {
    !is_space(b) && !matches!(b, b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%')
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const CATALOG: &str = "1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n";
    const PAGES: &str = "2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n";
    const PAGE: &str = "3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] \
                        /Resources << /Font << /F1 5 0 R /F2 6 0 R >> >> /Contents 4 0 R >>\nendobj\n";
    const FONT: &str = "5 0 obj\n<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>\nendobj\n";
    const CONTENT: &[u8] =
        b"BT /F1 12 Tf 72 720 Td (Invoice number INV-2024-17) Tj 0 -20 Td (Total due 100.00 EUR) Tj ET";

    /// A PDF of `parts` after a header, without cross-reference table or trailer.
    fn pdf(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = b"%PDF-1.7\n".to_vec();
        for part in parts {
            out.extend_from_slice(part);
        }
        out
    }

    /// A stream object whose `/Length` is `length`, or the data's when `None`.
    fn stream(number: u32, dict: &str, data: &[u8], length: Option<usize>) -> Vec<u8> {
        let length = length.unwrap_or(data.len());
        let mut out = format!("{number} 0 obj\n<< {dict} /Length {length} >>\nstream\n").into_bytes();
        out.extend_from_slice(data);
        out.extend_from_slice(b"\nendstream\nendobj\n");
        out
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).expect("in memory");
        encoder.finish().expect("in memory")
    }

    fn invalid() -> Result<Document, ExtractError> {
        Err(ExtractError::InvalidPdf { reason: "loading: no cross-reference table".into() })
    }

    #[test]
    fn a_file_without_cross_reference_table_is_rebuilt_and_reads() {
        let bytes = pdf(&[
            CATALOG.as_bytes(),
            PAGES.as_bytes(),
            PAGE.as_bytes(),
            &stream(4, "", CONTENT, None),
            FONT.as_bytes(),
        ]);
        assert!(Document::load_mem(&bytes).is_err(), "lopdf alone cannot read it");
        let (doc, repaired) = load(&bytes, invalid()).expect("rebuilt");
        assert!(repaired);
        assert_eq!(doc.get_pages().len(), 1);
        let text = crate::text(&bytes).expect("text");
        assert!(text.contains("INV-2024-17"), "{text}");
    }

    #[test]
    fn a_length_that_lies_is_replaced_by_the_data_found() {
        for length in [Some(10), Some(CONTENT.len() + 500), Some(0)] {
            let bytes = pdf(&[
                CATALOG.as_bytes(),
                PAGES.as_bytes(),
                PAGE.as_bytes(),
                &stream(4, "", CONTENT, length),
                FONT.as_bytes(),
            ]);
            let doc = rebuild(&bytes).expect("rebuilt");
            let content = doc.get_object((4, 0)).and_then(Object::as_stream).expect("content stream");
            assert_eq!(content.content, CONTENT, "declared length {length:?}");
        }
    }

    #[test]
    fn a_stream_cut_off_by_the_end_of_the_file_keeps_what_is_there() {
        // Long enough that half of its compressed data holds the first lines.
        let mut data = CONTENT.to_vec();
        for line in 0..300 {
            data.extend_from_slice(
                format!("\nBT /F1 9 Tf 72 {} Td (Item {line} costs {line}.00 EUR) Tj ET", 700 - line).as_bytes(),
            );
        }
        let compressed = zlib(&data);
        let content = stream(4, "/Filter /FlateDecode", &compressed, None);
        let mut bytes = pdf(&[CATALOG.as_bytes(), PAGES.as_bytes(), PAGE.as_bytes(), FONT.as_bytes(), &content]);
        // Cut inside the compressed data: past the first string, before the second.
        bytes.truncate(bytes.len() - content.len() + content.len() / 2 + 20);
        let doc = rebuild(&bytes).expect("rebuilt");
        let stream = doc.get_object((4, 0)).and_then(Object::as_stream).expect("content stream");
        assert!(stream.dict.get(b"Filter").is_err(), "stored decoded");
        let text = String::from_utf8_lossy(&stream.content);
        assert!(data.starts_with(&stream.content) && text.contains("INV-2024-17"), "{text}");
        assert!(stream.content.len() < data.len(), "cut short");
    }

    #[test]
    fn partial_inflation_keeps_the_output_before_the_damage() {
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| format!("{i} ").into_bytes()).collect();
        let compressed = zlib(&data);
        assert!(inflate_partial(&compressed).is_none(), "a whole stream is left to the normal decoder");
        let cut = inflate_partial(&compressed[..compressed.len() / 2]).expect("half of it");
        assert!(cut.len() > data.len() / 4 && data.starts_with(&cut), "{} of {}", cut.len(), data.len());
        // A flipped byte in the checksum: everything inflates, the check fails.
        let mut bad_check = compressed.clone();
        if let Some(last) = bad_check.last_mut() {
            *last ^= 0xff;
        }
        assert_eq!(inflate_partial(&bad_check).expect("all of it"), data);
    }

    /// A file with object 7 written directly and packed in an object stream, in the order given.
    fn object_7_twice(packed_first: bool) -> Vec<u8> {
        let packed_data = b"7 0 << /Marker (packed) >>";
        let packed = stream(8, "/Type /ObjStm /N 1 /First 4", packed_data, None);
        let direct = b"7 0 obj\n<< /Marker (direct) >>\nendobj\n";
        let (first, second): (&[u8], &[u8]) = if packed_first { (&packed, direct) } else { (direct, &packed) };
        pdf(&[CATALOG.as_bytes(), PAGES.as_bytes(), PAGE.as_bytes(), &stream(4, "", CONTENT, None), first, second])
    }

    #[test]
    fn the_later_definition_of_an_object_wins_wherever_it_is_stored() {
        for (packed_first, expected) in [(true, "direct"), (false, "packed")] {
            let doc = rebuild(&object_7_twice(packed_first)).expect("rebuilt");
            let marker = doc.get_dictionary((7, 0)).and_then(|d| d.get(b"Marker")).and_then(Object::as_str);
            assert_eq!(marker.ok(), Some(expected.as_bytes()), "packed first: {packed_first}");
        }
    }

    #[test]
    fn an_incremental_update_overrides_and_a_broken_update_does_not() {
        let old = stream(4, "", b"BT /F1 12 Tf 72 720 Td (Invoice number OLD-1) Tj ET", None);
        let new = stream(4, "", CONTENT, None);
        let broken = b"4 0 obj\n<< /Length 12 /Broken [ >>\nstream\n";
        let base = [CATALOG.as_bytes(), PAGES.as_bytes(), PAGE.as_bytes(), FONT.as_bytes()];
        let updated = pdf(&[&base[..], &[&old[..], &new[..]]].concat());
        let text = crate::text(&updated).expect("text");
        assert!(text.contains("INV-2024-17") && !text.contains("OLD-1"), "{text}");
        let broken_update = pdf(&[&base[..], &[&new[..], &broken[..]]].concat());
        let text = crate::text(&broken_update).expect("text");
        assert!(text.contains("INV-2024-17"), "{text}");
    }

    #[test]
    fn an_object_header_inside_stream_data_is_not_an_object() {
        let data = b"BT /F1 12 Tf 72 720 Td (9 0 obj << /Type /Catalog >> endobj) Tj ET";
        let bytes =
            pdf(&[CATALOG.as_bytes(), PAGES.as_bytes(), PAGE.as_bytes(), &stream(4, "", data, None), FONT.as_bytes()]);
        let doc = rebuild(&bytes).expect("rebuilt");
        assert!(doc.get_object((9, 0)).is_err());
        assert_eq!(
            doc.get_object((4, 0)).and_then(Object::as_stream).map(|s| s.content.as_slice()).ok(),
            Some(&data[..])
        );
    }

    #[test]
    fn without_a_catalog_the_page_tree_or_the_loose_pages_are_used() {
        let content = stream(4, "", CONTENT, None);
        let without_catalog = pdf(&[PAGES.as_bytes(), PAGE.as_bytes(), &content, FONT.as_bytes()]);
        let without_tree = pdf(&[PAGE.as_bytes(), &content, FONT.as_bytes()]);
        for bytes in [without_catalog, without_tree] {
            let (doc, repaired) = load(&bytes, invalid()).expect("rebuilt");
            assert!(repaired && doc.catalog().is_ok());
            assert_eq!(doc.get_pages().len(), 1);
            let text = crate::text(&bytes).expect("text");
            assert!(text.contains("INV-2024-17"), "{text}");
        }
    }

    #[test]
    fn a_lost_font_shows_nothing_and_the_rest_of_the_page_reads() {
        // F2 (object 6) is gone; its text is skipped, F1's reads.
        let data =
            b"BT /F2 12 Tf 72 760 Td (Lost words) Tj ET BT /F1 12 Tf 72 720 Td (Invoice number INV-2024-17) Tj ET";
        let bytes =
            pdf(&[CATALOG.as_bytes(), PAGES.as_bytes(), PAGE.as_bytes(), &stream(4, "", data, None), FONT.as_bytes()]);
        let text = crate::text(&bytes).expect("text");
        assert!(text.contains("INV-2024-17") && !text.contains("Lost"), "{text}");
    }

    #[test]
    fn bytes_without_objects_keep_their_error() {
        for bytes in [
            &b"%PDF-1.7\n"[..],
            b"%PDF-1.7\nnot a PDF at all, only words and 1 2 3 numbers\n",
            b"%PDF-1.7\n1 0 obj\n<<",
        ] {
            let err = load(bytes, invalid()).expect_err("not repairable");
            assert_eq!(err.code(), "invalid_pdf");
        }
    }

    #[test]
    fn a_readable_pdf_is_not_repaired() {
        let mut doc = Document::with_version("1.7");
        let pages = doc.new_object_id();
        let page = doc.add_object(dictionary! { "Type" => "Page", "Parent" => pages });
        doc.objects.insert(
            pages,
            Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1 }),
        );
        let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages });
        doc.trailer.set("Root", catalog);
        let mut bytes = Vec::new();
        doc.save_to(&mut bytes).expect("in memory");
        let loaded = Document::load_mem(&bytes).map_err(|e| ExtractError::InvalidPdf { reason: e.to_string() });
        let (_, repaired) = load(&bytes, loaded).expect("reads");
        assert!(!repaired);
    }

    #[test]
    fn the_scan_finds_headers_and_keywords_as_tokens() {
        let bytes = b"12 0 obj\nendobj 3 1 obj x10 0 obj 4 0 objective endstreamx endstream";
        let headers: Vec<(ObjectId, usize)> = object_headers(bytes).iter().map(|h| (h.0, h.1)).collect();
        assert_eq!(headers, vec![((12, 0), 0), ((3, 1), 16)]);
        assert_eq!(
            keyword_positions(bytes, b"endstream"),
            vec![b"12 0 obj\nendobj 3 1 obj x10 0 obj 4 0 objective endstreamx ".len()]
        );
        assert_eq!(declared_length(b"<< /Length1 300 /Length 42 >>"), Some(42));
        assert_eq!(declared_length(b"<< /Length 7 0 R >>"), None);
    }
}
