//! PDF access: loading, page count, embedded e-invoice files, the text layer and page images.
//!
//! This is the only module that touches `lopdf` and `pdf-extract` (with `text_layer`, which lays out the
//! glyphs `pdf-extract` reports, and `prepare`, which readies a page for `pdf-extract` within the limits). Both are lenient parsers with `unwrap`s
//! and index arithmetic inside, so every call into them goes through [`guarded`], which turns a panic into
//! [`ExtractError::InvalidPdf`]. Walks over the object graph are bounded in depth and in nodes, because a
//! hostile PDF can make its name tree cyclic or huge.

use std::collections::HashSet;
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};

use lopdf::{Dictionary, Document, Object, ObjectId};

use crate::raster::{EncodedImage, Encoding};
use crate::text_layer::PageText;
use crate::ExtractError;

/// Largest embedded XML we inflate. Real e-invoices are a few hundred KiB at most; the cap stops a
/// compression bomb from taking the worker's memory.
const MAX_EMBEDDED_BYTES: u64 = 16 * 1024 * 1024;
/// Name trees deeper than this are treated as broken.
const MAX_TREE_DEPTH: usize = 16;
/// Upper bound on name-tree nodes and file specifications visited.
const MAX_TREE_NODES: usize = 4096;
/// Pages whose text we read. Invoices are short; the first pages hold the header and the totals usually
/// come before page 20 as well.
const MAX_TEXT_PAGES: u32 = 20;
/// Fewer letters and digits than this in the whole text layer means there is no usable text layer.
const MIN_TEXT_CHARS: usize = 16;
/// Pages OCR reads. OCR takes seconds a page; the header and the totals of an invoice come early.
const MAX_OCR_PAGES: usize = 8;

/// File names that the Factur-X, ZUGFeRD 1.x/2.x and XRechnung specifications give the invoice XML, in
/// lowercase; preferred over any other XML attachment.
const EINVOICE_FILE_NAMES: &[&str] = &["factur-x.xml", "zugferd-invoice.xml", "xrechnung.xml", "order-x.xml"];

/// US Letter in points: the page size of a page that states none.
const LETTER: (f64, f64) = (612.0, 792.0);
/// Largest page content looked at for text operators; an invoice page's is tens of KiB.
const MAX_CONTENT_BYTES: usize = 4 * 1024 * 1024;

/// A page of a loaded PDF: its number (from 1) and its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PdfPage {
    pub number: u32,
    id: ObjectId,
}

/// Joins the text of pages, a blank line between them: the PDF is invalid when every page failed, and has
/// no text layer when the pages that did work hold almost no letters or digits.
pub(crate) fn join_page_texts(pages: Vec<Result<String, ExtractError>>) -> Result<String, ExtractError> {
    let mut text = String::new();
    let mut failures = Vec::new();
    let count = pages.len();
    for page in pages {
        match page {
            Ok(page_text) => {
                text.push_str(&page_text);
                text.push_str("\n\n");
            }
            Err(err) => failures.push(err),
        }
    }
    if count > 0 && failures.len() == count {
        return Err(failures.swap_remove(0));
    }
    if !has_text(&text) {
        return Err(ExtractError::NoText);
    }
    Ok(text)
}

/// Whether a text holds enough letters and digits to be read: [`MIN_TEXT_CHARS`].
pub(crate) fn has_text(text: &str) -> bool {
    text.chars().filter(|c| c.is_alphanumeric()).count() >= MIN_TEXT_CHARS
}

/// A loaded, structurally valid PDF.
pub(crate) struct PdfFile {
    doc: Document,
    /// Whether the file was damaged and repaired ([`crate::repair`]: rebuilt from a scan of its bytes, or
    /// references to its lost objects dropped): what is read from it may be incomplete, as the invoice's
    /// warnings say.
    pub repaired: bool,
    /// Pages in the page tree, counted when the file was opened.
    pages: u32,
}

/// One XML file attached to a PDF.
pub(crate) struct EmbeddedFile {
    pub name: String,
    pub data: Vec<u8>,
}

impl PdfFile {
    /// Parses the bytes; a PDF without a catalog or without pages is refused, since lenient loading turns
    /// some garbage into an empty document instead of an error.
    pub fn open(bytes: &[u8], limits: &crate::Limits) -> Result<Self, ExtractError> {
        let loaded = guarded("loading", || Document::load_mem(bytes).map_err(|e| e.to_string()));
        let (mut doc, repaired) = crate::repair::load(bytes, loaded)?;
        if doc.is_encrypted() {
            // Many invoices are "encrypted" with an empty user password only to forbid editing.
            let reason = match catch_unwind(AssertUnwindSafe(|| doc.decrypt(""))) {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("its encryption dictionary is malformed".to_string()),
            };
            if let Some(reason) = reason {
                return Err(ExtractError::EncryptedPdf { reason });
            }
        }
        if doc.catalog().is_err() {
            return Err(invalid("no document catalog"));
        }
        // Counted once: walking the page tree is the costly part of an upload's check.
        let pages = catch_unwind(AssertUnwindSafe(|| doc.get_pages().len()))
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        let file = Self { doc, repaired, pages };
        if pages == 0 {
            return Err(ExtractError::NoPages);
        }
        if pages > limits.max_pages {
            return Err(ExtractError::TooManyPages { pages: u64::from(pages), limit: limits.max_pages });
        }
        Ok(file)
    }

    /// Makes the pages whose text is read safe for `pdf-extract` within `limits` ([`crate::prepare`]): their
    /// streams decoded under caps, forms that draw themselves cut. Returns warnings for the invoice; an error
    /// is a limit the document exceeds.
    pub fn prepare_text_pages(&mut self, limits: &crate::Limits) -> Result<Vec<String>, ExtractError> {
        let pages: Vec<ObjectId> = catch_unwind(AssertUnwindSafe(|| {
            self.doc.get_pages().into_values().take(MAX_TEXT_PAGES as usize).collect()
        }))
        .unwrap_or_default();
        let mut preparer = crate::prepare::Preparer::new(limits);
        for page in pages {
            match catch_unwind(AssertUnwindSafe(|| preparer.page(&mut self.doc, page))) {
                Ok(result) => result?,
                Err(_) => return Err(invalid("a page's resources are malformed")),
            }
        }
        Ok(preparer.warnings)
    }

    pub fn page_count(&self) -> u32 {
        self.pages
    }

    /// The XML attachments, the conventional e-invoice names first. Broken attachments are skipped.
    pub fn embedded_xml_files(&self) -> Vec<EmbeddedFile> {
        let specs = catch_unwind(AssertUnwindSafe(|| self.file_specs())).unwrap_or_default();
        let mut files: Vec<EmbeddedFile> = specs
            .into_iter()
            .filter_map(|(name, stream_id)| {
                let data = self.stream_data(stream_id)?;
                looks_like_xml(&data).then_some(EmbeddedFile { name, data })
            })
            .collect();
        if files.is_empty() {
            // A PDF whose name tree is broken may still hold the file: look at every embedded-file stream.
            files = catch_unwind(AssertUnwindSafe(|| self.loose_embedded_streams())).unwrap_or_default();
        }
        files.sort_by_key(|f| !EINVOICE_FILE_NAMES.contains(&f.name.to_lowercase().as_str()));
        files
    }

    /// The text layer of the first pages, pages separated by a blank line.
    ///
    /// A page that fails is skipped; the PDF is invalid only when every page fails, and has no text layer
    /// when the pages that did work hold almost no letters or digits.
    pub fn text(&self) -> Result<String, ExtractError> {
        join_page_texts(self.page_texts())
    }

    /// The text layer of each of the first pages, in order.
    pub fn page_texts(&self) -> Vec<Result<String, ExtractError>> {
        self.read_pages(PageText::into_text)
    }

    /// The text layer of each of the first pages in content-stream order and as laid out on the page (see
    /// [`PageText::into_texts`]), from one reading of each page.
    pub fn page_text_pairs(&self) -> Vec<Result<(String, String), ExtractError>> {
        self.read_pages(PageText::into_texts)
    }

    fn read_pages<T>(&self, lay_out: impl Fn(PageText) -> T) -> Vec<Result<T, ExtractError>> {
        let pages: Vec<u32> = self.doc.get_pages().keys().copied().take(MAX_TEXT_PAGES as usize).collect();
        pages
            .iter()
            .map(|page| {
                guarded("reading the text layer", || {
                    let mut output = PageText::new();
                    pdf_extract::output_doc_page(&self.doc, &mut output, *page).map_err(|e| e.to_string())?;
                    Ok(lay_out(output))
                })
            })
            .collect()
    }

    /// The pages OCR may read, in order, at most [`MAX_OCR_PAGES`].
    pub fn ocr_pages(&self) -> Vec<PdfPage> {
        let pages: Vec<(u32, ObjectId)> =
            catch_unwind(AssertUnwindSafe(|| self.doc.get_pages().into_iter().take(MAX_OCR_PAGES).collect()))
                .unwrap_or_default();
        pages.into_iter().map(|(number, id)| PdfPage { number, id }).collect()
    }

    /// The page's largest image and the page's width in points: what OCR reads of a page without a text
    /// layer. `None` for a page without an image; an image in an encoding NOVA cannot decode (CCITT, JBIG2,
    /// JPEG 2000, predictors) is an [`ExtractError::InvalidImage`].
    pub fn page_image(&self, page: PdfPage) -> Option<Result<(EncodedImage, f64), ExtractError>> {
        let found = catch_unwind(AssertUnwindSafe(|| self.largest_image(page.id))).unwrap_or_else(|_| {
            Some(Err(ExtractError::InvalidImage { reason: "the page's image is malformed".into() }))
        })?;
        Some(found.map(|image| (image, self.page_size_points(page.id).0)))
    }

    /// The page's width and height in points, from its (possibly inherited) `/MediaBox`; US Letter's when it
    /// has none.
    pub fn page_size(&self, page: PdfPage) -> (f64, f64) {
        catch_unwind(AssertUnwindSafe(|| self.page_size_points(page.id))).unwrap_or(LETTER)
    }

    /// Whether the page's content shows text (`Tj`, `TJ`, `'`, `"`): a page that does, and whose text layer
    /// is empty, draws glyphs that cannot be read as text (Type3 procedures, fonts without a Unicode
    /// mapping). Content larger than [`MAX_CONTENT_BYTES`] is not looked at.
    pub fn shows_text(&self, page: PdfPage) -> bool {
        catch_unwind(AssertUnwindSafe(|| {
            let Ok(content) = self.doc.get_page_content(page.id) else { return false };
            if content.len() > MAX_CONTENT_BYTES {
                return false;
            }
            lopdf::content::Content::decode(&content)
                .is_ok_and(|c| c.operations.iter().any(|op| matches!(op.operator.as_str(), "Tj" | "TJ" | "'" | "\"")))
        }))
        .unwrap_or(false)
    }

    fn largest_image(&self, page: ObjectId) -> Option<Result<EncodedImage, ExtractError>> {
        self.image_streams(page).first().map(|(_, stream)| self.encoded_image(stream))
    }

    /// The page's images of at least `min_pixels`, largest first, at most `limit` of them: a letterhead or a
    /// footer pasted onto a page with text as a picture. Images NOVA cannot decode are left out.
    pub fn page_images(&self, page: PdfPage, min_pixels: u64, limit: usize) -> Vec<EncodedImage> {
        catch_unwind(AssertUnwindSafe(|| {
            self.image_streams(page.id)
                .into_iter()
                .take_while(|(pixels, _)| *pixels >= min_pixels)
                .take(limit)
                .filter_map(|(_, stream)| self.encoded_image(stream).ok())
                .collect()
        }))
        .unwrap_or_default()
    }

    /// The image XObjects of a page's (possibly inherited) resources with their pixel counts, largest first.
    fn image_streams(&self, page: ObjectId) -> Vec<(u64, &lopdf::Stream)> {
        let Ok((direct, inherited)) = self.doc.get_page_resources(page) else { return Vec::new() };
        let resources = direct.into_iter().chain(inherited.iter().filter_map(|id| self.doc.get_dictionary(*id).ok()));
        let pixels = |s: &lopdf::Stream| {
            let dim = |key: &[u8]| s.dict.get(key).and_then(Object::as_i64).unwrap_or(0).max(0) as u64;
            dim(b"Width").saturating_mul(dim(b"Height"))
        };
        let mut images: Vec<(u64, &lopdf::Stream)> = Vec::new();
        for resources in resources.take(MAX_TREE_DEPTH) {
            let Some(xobjects) = self.deref_dict(resources.get(b"XObject").ok()) else { continue };
            for (_, object) in xobjects.iter().take(MAX_TREE_NODES) {
                let Object::Stream(stream) = self.deref(object) else { continue };
                if stream.dict.get(b"Subtype").and_then(Object::as_name).is_ok_and(|n| n == b"Image") {
                    images.push((pixels(stream), stream));
                }
            }
        }
        // Stable: of images of one size, the first listed stays first.
        images.sort_by_key(|(pixels, _)| std::cmp::Reverse(*pixels));
        images
    }

    fn encoded_image(&self, stream: &lopdf::Stream) -> Result<EncodedImage, ExtractError> {
        let dict = &stream.dict;
        let unsupported = |what: String| ExtractError::InvalidImage { reason: format!("unsupported image: {what}") };
        let number = |key: &[u8]| dict.get(key).ok().map(|o| self.deref(o)).and_then(|o| o.as_i64().ok());
        let width = number(b"Width").filter(|w| *w > 0).ok_or_else(|| unsupported("no width".into()))?;
        let height = number(b"Height").filter(|h| *h > 0).ok_or_else(|| unsupported("no height".into()))?;
        let filters: Vec<Vec<u8>> = match dict.get(b"Filter").ok().map(|o| self.deref(o)) {
            None => Vec::new(),
            Some(Object::Name(name)) => vec![name.clone()],
            Some(Object::Array(names)) => names.iter().filter_map(|n| n.as_name().ok().map(<[u8]>::to_vec)).collect(),
            Some(_) => return Err(unsupported("a malformed filter".into())),
        };
        let encoding = match filters.iter().map(Vec::as_slice).collect::<Vec<_>>().as_slice() {
            [] => Encoding::Raw,
            [b"DCTDecode" | b"DCT"] => Encoding::Jpeg,
            [b"FlateDecode" | b"Fl"] => {
                let predictor = self
                    .deref_dict(dict.get(b"DecodeParms").ok())
                    .and_then(|p| p.get(b"Predictor").ok())
                    .and_then(|p| p.as_i64().ok())
                    .unwrap_or(1);
                if predictor > 1 {
                    return Err(unsupported(format!("Flate samples with predictor {predictor}")));
                }
                Encoding::Flate
            }
            other => {
                let names: Vec<String> = other.iter().map(|n| String::from_utf8_lossy(n).into_owned()).collect();
                return Err(unsupported(format!("the filter {}", names.join(", "))));
            }
        };
        let components = match dict.get(b"ColorSpace").ok().map(|o| self.deref(o)) {
            Some(Object::Name(name)) => match name.as_slice() {
                b"DeviceGray" | b"CalGray" | b"G" => 1,
                b"DeviceRGB" | b"CalRGB" | b"RGB" => 3,
                b"DeviceCMYK" | b"CMYK" => 4,
                _ => 0,
            },
            Some(Object::Array(parts)) => match parts.first().and_then(|p| p.as_name().ok()) {
                Some(b"ICCBased") => parts
                    .get(1)
                    .and_then(|p| match self.deref(p) {
                        Object::Stream(icc) => icc.dict.get(b"N").and_then(Object::as_i64).ok(),
                        _ => None,
                    })
                    .unwrap_or(0) as u8,
                Some(b"CalGray") => 1,
                Some(b"CalRGB") => 3,
                _ => 0,
            },
            // An image mask, or a JPEG that says its own.
            _ => 1,
        };
        if components == 0 && encoding != Encoding::Jpeg {
            return Err(unsupported("its colour space".into()));
        }
        let bits = number(b"BitsPerComponent").unwrap_or(8);
        Ok(EncodedImage {
            width: width as u64,
            height: height as u64,
            components,
            bits_per_component: u8::try_from(bits).unwrap_or(0),
            encoding,
            data: stream.content.clone(),
        })
    }

    /// The page's width and height in points from its (possibly inherited) `/MediaBox`; US Letter's when it
    /// has none.
    fn page_size_points(&self, page: ObjectId) -> (f64, f64) {
        let mut node = self.doc.get_dictionary(page).ok();
        for _ in 0..MAX_TREE_DEPTH {
            let Some(dict) = node else { break };
            if let Some(Object::Array(rect)) = dict.get(b"MediaBox").ok().map(|o| self.deref(o)) {
                let values: Vec<f64> =
                    rect.iter().filter_map(|v| self.deref(v).as_float().ok()).map(f64::from).collect();
                if let [x0, y0, x1, y1] = values[..] {
                    let (width, height) = ((x1 - x0).abs(), (y1 - y0).abs());
                    if width > 1.0 && height > 1.0 {
                        return (width, height);
                    }
                }
            }
            node = self.deref_dict(dict.get(b"Parent").ok());
        }
        LETTER
    }

    /// File specifications reachable from the catalog's EmbeddedFiles name tree and its `/AF` array, as
    /// (file name, embedded stream id), without duplicates.
    fn file_specs(&self) -> Vec<(String, ObjectId)> {
        let mut specs = Vec::new();
        let mut budget = MAX_TREE_NODES;
        let Ok(catalog) = self.doc.catalog() else { return specs };
        if let Some(tree) =
            self.deref_dict(catalog.get(b"Names").ok()).and_then(|names| names.get(b"EmbeddedFiles").ok())
        {
            let mut seen = HashSet::new();
            self.walk_name_tree(tree, 0, &mut budget, &mut seen, &mut specs);
        }
        if let Some(Object::Array(af)) = catalog.get(b"AF").ok().map(|o| self.deref(o)) {
            for spec in af.iter().take(budget) {
                self.push_file_spec(spec, &mut specs);
            }
        }
        let mut seen_streams = HashSet::new();
        specs.retain(|(_, id)| seen_streams.insert(*id));
        specs
    }

    fn walk_name_tree(
        &self,
        node: &Object,
        depth: usize,
        budget: &mut usize,
        seen: &mut HashSet<ObjectId>,
        out: &mut Vec<(String, ObjectId)>,
    ) {
        if depth > MAX_TREE_DEPTH || *budget == 0 {
            return;
        }
        *budget -= 1;
        if let Object::Reference(id) = node {
            if !seen.insert(*id) {
                return; // a cycle
            }
        }
        let Some(dict) = self.deref_dict(Some(node)) else { return };
        if let Some(Object::Array(names)) = dict.get(b"Names").ok().map(|o| self.deref(o)) {
            // [name1 spec1 name2 spec2 ...]
            for spec in names.iter().skip(1).step_by(2).take(*budget) {
                self.push_file_spec(spec, out);
            }
        }
        if let Some(Object::Array(kids)) = dict.get(b"Kids").ok().map(|o| self.deref(o)) {
            for kid in kids {
                self.walk_name_tree(kid, depth + 1, budget, seen, out);
            }
        }
    }

    /// Reads one file specification: its name (`/UF`, else `/F`) and the stream under `/EF`.
    fn push_file_spec(&self, spec: &Object, out: &mut Vec<(String, ObjectId)>) {
        let Some(spec) = self.deref_dict(Some(spec)) else { return };
        let name = [b"UF".as_slice(), b"F"]
            .iter()
            .find_map(|key| match spec.get(key).ok().map(|o| self.deref(o)) {
                Some(Object::String(bytes, _)) => Some(decode_pdf_string(bytes)),
                _ => None,
            })
            .unwrap_or_default();
        let Some(ef) = self.deref_dict(spec.get(b"EF").ok()) else { return };
        let stream =
            [b"F".as_slice(), b"UF"].iter().find_map(|key| ef.get(key).ok().and_then(|o| o.as_reference().ok()));
        if let Some(id) = stream {
            out.push((name, id));
        }
    }

    /// Every stream with `/Type /EmbeddedFile` that holds XML, for PDFs whose name tree is broken.
    fn loose_embedded_streams(&self) -> Vec<EmbeddedFile> {
        self.doc
            .objects
            .iter()
            .filter(|(_, obj)| {
                matches!(obj, Object::Stream(s) if s.dict.get(b"Type").and_then(Object::as_name).is_ok_and(|n| n == b"EmbeddedFile"))
            })
            .take(MAX_TREE_NODES)
            .filter_map(|(id, _)| self.stream_data(*id))
            .filter(|data| looks_like_xml(data))
            .map(|data| EmbeddedFile { name: String::new(), data })
            .collect()
    }

    /// The decoded content of a stream object: inflated with a size cap for `/FlateDecode` (the only filter
    /// e-invoice writers use), raw when unfiltered, and `None` for anything else.
    fn stream_data(&self, id: ObjectId) -> Option<Vec<u8>> {
        let Ok(Object::Stream(stream)) = self.doc.get_object(id) else { return None };
        let filters: Vec<Vec<u8>> = match stream.dict.get(b"Filter").ok().map(|o| self.deref(o)) {
            None => Vec::new(),
            Some(Object::Name(name)) => vec![name.clone()],
            Some(Object::Array(names)) => names.iter().filter_map(|n| n.as_name().ok().map(<[u8]>::to_vec)).collect(),
            Some(_) => return None,
        };
        match filters.as_slice() {
            [] => Some(stream.content.clone()),
            [only] if only == b"FlateDecode" || only == b"Fl" => inflate_capped(&stream.content),
            _ => None,
        }
    }

    fn deref<'a>(&'a self, obj: &'a Object) -> &'a Object {
        self.doc.dereference(obj).map(|(_, o)| o).unwrap_or(obj)
    }

    fn deref_dict<'a>(&'a self, obj: Option<&'a Object>) -> Option<&'a Dictionary> {
        self.deref(obj?).as_dict().ok()
    }
}

/// Runs a call into a PDF library, turning its errors and panics into [`ExtractError::InvalidPdf`].
fn guarded<T>(step: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, ExtractError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(reason)) => Err(invalid(&format!("{step}: {reason}"))),
        Err(_) => Err(invalid(&format!("{step}: the PDF parser failed on malformed data"))),
    }
}

fn invalid(reason: &str) -> ExtractError {
    ExtractError::InvalidPdf { reason: reason.to_string() }
}

/// Inflates zlib data, giving up (rather than truncating silently) past [`MAX_EMBEDDED_BYTES`].
fn inflate_capped(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut reader = flate2::read::ZlibDecoder::new(data).take(MAX_EMBEDDED_BYTES + 1);
    reader.read_to_end(&mut out).ok()?;
    (out.len() as u64 <= MAX_EMBEDDED_BYTES).then_some(out)
}

/// PDF text strings are UTF-16BE with a byte-order mark, or PDFDocEncoding (close enough to Latin-1 for
/// file names).
fn decode_pdf_string(bytes: &[u8]) -> String {
    if let Some(utf16) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        let units: Vec<u16> = utf16.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
        return String::from_utf16_lossy(&units);
    }
    if let Some(utf8) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return String::from_utf8_lossy(utf8).into_owned();
    }
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn looks_like_xml(data: &[u8]) -> bool {
    let head = &data[..data.len().min(512)];
    let start = head.iter().position(|b| !b.is_ascii_whitespace() && !matches!(b, 0xEF | 0xBB | 0xBF));
    start.is_some_and(|i| head[i] == b'<')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdf_strings_decode_from_utf16_and_latin1() {
        assert_eq!(decode_pdf_string(b"\xFE\xFF\0f\0a\0c\0t"), "fact");
        assert_eq!(decode_pdf_string(b"factur-x.xml"), "factur-x.xml");
    }

    #[test]
    fn inflation_refuses_oversized_output() {
        use std::io::Write;
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![b'a'; (MAX_EMBEDDED_BYTES + 10) as usize]).unwrap();
        let bomb = enc.finish().unwrap();
        assert!(inflate_capped(&bomb).is_none());
    }
}
