//! OCR of image-only pages: the engine behind a trait, its words laid out again as text.
//!
//! `nova-extract` does no I/O, so it does not run an OCR engine itself: the caller passes one ([`Ocr`]) to
//! [`crate::extract_with`]. `nova_app::engines::Tesseract` is the engine NOVA ships; tests can pass their
//! own. The engine returns words with their boxes; [`layout`] turns them back into lines whose columns
//! are separated by wide gaps, the form the text layer's rules read.

mod confidence;

use std::panic::{catch_unwind, AssertUnwindSafe};

use nova_core::Invoice;

use crate::pdf::{has_text, join_page_texts, PdfFile, PdfPage};
use crate::raster::{self, EncodedImage, GrayImage};
use crate::render::{self, PageRenderer};
use crate::{ExtractError, OCR_CONFIDENCE_FACTOR};

/// A page image handed to an OCR engine: straightened grey levels and their resolution.
#[derive(Debug)]
pub struct OcrPage {
    pub image: GrayImage,
    pub dpi: u32,
}

/// One recognised word with its box in pixels, and the engine's line it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct OcrWord {
    pub text: String,
    pub left: u32,
    pub top: u32,
    pub width: u32,
    pub height: u32,
    /// The engine's confidence, 0 to 100.
    pub confidence: f32,
    /// Identifies the engine's line (block, paragraph, line): words of one line share it.
    pub line: (u32, u32, u32),
}

/// An OCR engine: a page image in, its words out.
///
/// Errors are [`ExtractError::OcrUnavailable`] when the engine cannot run at all (not installed), and
/// [`ExtractError::OcrFailed`] when it ran and failed on this page (a time limit, a crash).
pub trait Ocr: Send + Sync {
    fn recognize(&self, page: &OcrPage) -> Result<Vec<OcrWord>, ExtractError>;
}

/// Pages scanned below this resolution are scaled up to it for OCR. Pages above it are read as they are:
/// on the dev scans (150 dpi), scaling to 200 or 300 dpi read fewer fields right, not more, and took
/// longer.
const MIN_OCR_DPI: f64 = 150.0;
/// Fewer letters and digits than this in all pages read means OCR found no text.
const MIN_OCR_CHARS: usize = 16;

/// An image of at least this many pixels on a page without text is a scanned page, not a logo (an A4 page
/// at 72 dpi has half a million): OCR reads it even when other pages of the PDF have a text layer.
const MIN_SCANNED_PAGE_PIXELS: u64 = 500_000;

/// What was read of a PDF's pages.
pub(crate) enum PdfText {
    /// The text layer alone: every page that OCR may read has one, or OCR found nothing more.
    Text(String),
    /// OCR alone: the PDF has no usable text layer.
    Ocr(String, ReadWords),
    /// Pages of the text layer and pages read by OCR, in page order.
    Mixed(String, ReadWords),
}

/// The words OCR read, line by line as laid out, each with the engine's confidence (0 to 100; a token
/// joined from pieces has the lowest of theirs).
#[derive(Debug, Default)]
pub(crate) struct ReadWords(Vec<Vec<(String, f32)>>);

/// How a page's image is prepared for the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Straightened and scaled, as scanned otherwise.
    AsScanned,
    /// Its ruling lines taken out as well ([`raster::remove_rules`]).
    WithoutRules,
}

/// A scan whose first reading (`first`, with its text) lacks a core field is read again with its ruling lines
/// taken out: a page segmenter may take a ruled table or a boxed header for a picture and leave its text
/// unread. Of the two readings, the one that fills more core fields is kept (the first on a tie: taking out
/// the rules also cuts the strokes they cross, and on a page the segmenter read well it costs more than it
/// gains).
pub(crate) fn reread_without_rules(
    file: &PdfFile,
    bytes: &[u8],
    engine: &dyn Ocr,
    renderer: Option<&dyn PageRenderer>,
    templates: &crate::TemplateSet,
    first: (Invoice, String),
) -> (Invoice, String) {
    let missing = |invoice: &Invoice| {
        let review = nova_core::review(invoice, nova_core::DEFAULT_CONFIDENCE_THRESHOLD);
        review.reasons.iter().filter(|r| r.why == nova_core::Why::Missing).count()
    };
    let before = missing(&first.0);
    if before == 0 {
        return first;
    }
    match read_scan(file, bytes, engine, renderer, Reading::WithoutRules) {
        Ok((text, words)) => {
            let second = invoice_from_ocr(&text, &words, "ocr", templates);
            if missing(&second) < before {
                return (second, text);
            }
            first
        }
        Err(e) => {
            tracing::debug!(error = %e, "a scan could not be read again without its ruling lines");
            first
        }
    }
}

/// Where OCR reads a page without text from.
enum PageSource {
    /// The page's largest image, with the page's width in points.
    Image(Result<(EncodedImage, f64), ExtractError>),
    /// The whole page, rendered.
    Render,
}

/// Reads a PDF's pages: the text layer where a page has one, OCR by `engine` where it has none
/// ([`page_source`] says from what). `page_texts` are the text layer's pages ([`PdfFile::page_texts`]).
///
/// A page that fails is skipped; a PDF without a text layer fails with the first page's error when no page
/// could be read, and at once when the OCR engine is unavailable (every page would fail the same way).
pub(crate) fn read_pdf(
    file: &PdfFile,
    bytes: &[u8],
    page_texts: Vec<Result<String, ExtractError>>,
    engine: &dyn Ocr,
    renderer: Option<&dyn PageRenderer>,
) -> Result<PdfText, ExtractError> {
    let texts: Vec<Option<String>> = page_texts.iter().map(|page| page.as_ref().ok().cloned()).collect();
    let text_layer = match join_page_texts(page_texts) {
        Ok(text) => text,
        Err(ExtractError::NoText) => {
            return read_scan(file, bytes, engine, renderer, Reading::AsScanned)
                .map(|(text, words)| PdfText::Ocr(text, words))
        }
        Err(e) => return Err(e),
    };
    // Pages with a text layer keep it; of the others, scans and unreadable glyphs are read by OCR.
    let pages = file.ocr_pages();
    let mut text = String::new();
    let mut words = ReadWords::default();
    let mut read_by_ocr = false;
    for page in &pages {
        let page_text = texts.get(page.number as usize - 1).cloned().flatten().unwrap_or_default();
        let source = if has_text(&page_text) { None } else { page_source(file, *page, renderer, false) };
        let read = source.map(|source| read_page(file, bytes, *page, source, engine, renderer, Reading::AsScanned));
        match read {
            Some(Ok(Some((ocr_text, ocr_words)))) if has_text(&ocr_text) => {
                text.push_str(&ocr_text);
                words.0.extend(ocr_words.0);
                read_by_ocr = true;
            }
            Some(Err(e @ ExtractError::OcrUnavailable { .. })) => return Err(e),
            Some(Err(e)) => {
                tracing::debug!(page = page.number, error = %e, "a page without text could not be read by OCR");
                text.push_str(&page_text);
            }
            _ => text.push_str(&page_text),
        }
        text.push_str("\n\n");
    }
    if !read_by_ocr {
        return Ok(PdfText::Text(text_layer));
    }
    // The pages past those OCR may read keep their text layer.
    for page_text in texts.iter().skip(pages.len()).flatten() {
        text.push_str(page_text);
        text.push_str("\n\n");
    }
    Ok(PdfText::Mixed(text, words))
}

/// The rules over text read by OCR, and over them the first vendor template that matches the text, all
/// confidences lowered by [`OCR_CONFIDENCE_FACTOR`] and the result marked with `source` (`template+` before
/// it when a template matched).
pub(crate) fn invoice_from_ocr(text: &str, words: &ReadWords, source: &str, templates: &crate::TemplateSet) -> Invoice {
    let mut invoice = templates.apply(text, crate::text::extract(text));
    // A vendor template read this OCR text: say both.
    invoice.source = Some(match invoice.source.as_deref() {
        Some("template") => format!("template+{source}"),
        _ => source.to_string(),
    });
    let read = confidence::read_confidences(&invoice, words);
    for (field, confidence) in invoice.confidence.iter_mut() {
        *confidence *= read.get(field.as_str()).map_or(OCR_CONFIDENCE_FACTOR, |&c| confidence::factor(c));
    }
    invoice
}

/// Images on the first page of a text PDF at least this large may hold a letterhead (a logo alone is smaller
/// or holds no name the rules take).
const MIN_LETTERHEAD_PIXELS: u64 = 40_000;
/// Images of the first page read for a missing seller, largest first.
const MAX_LETTERHEAD_IMAGES: usize = 3;
/// The resolution images of unknown placement are read at: as they are, never scaled up.
const LETTERHEAD_DPI: u32 = 150;

/// The seller of a text PDF printed as a picture (a letterhead or a footer pasted as an image): when the rules
/// found no seller name in `text`, the first page's larger images are read by OCR, and the seller's name, VAT id
/// and the IBAN the rules find in the text and those images together fill what `invoice` lacks, their
/// confidences lowered by [`OCR_CONFIDENCE_FACTOR`] and the source marked `+ocr`. Returns the text the images
/// held when it filled anything, for callers that keep the text read.
pub(crate) fn seller_from_images(
    file: &PdfFile,
    text: &str,
    invoice: &mut Invoice,
    engine: &dyn Ocr,
) -> Option<String> {
    if invoice.seller.as_ref().is_some_and(|s| s.name.is_some()) {
        return None;
    }
    let page = *file.ocr_pages().first()?;
    let mut images_text = String::new();
    for encoded in file.page_images(page, MIN_LETTERHEAD_PIXELS, MAX_LETTERHEAD_IMAGES) {
        let decoded = catch_unwind(AssertUnwindSafe(|| raster::decode(&encoded))).ok().and_then(Result::ok);
        let Some(image) = decoded else { continue };
        match engine.recognize(&OcrPage { image, dpi: LETTERHEAD_DPI }) {
            Ok(words) => {
                images_text.push_str(&layout(&words));
                images_text.push_str("\n\n");
            }
            Err(e) => {
                tracing::debug!(error = %e, "an image on a text page could not be read by OCR");
                if matches!(e, ExtractError::OcrUnavailable { .. }) {
                    return None;
                }
            }
        }
    }
    if !has_text(&images_text) {
        return None;
    }
    let both = crate::text::extract(&format!("{text}\n\n{images_text}"));
    let found = both.seller.unwrap_or_default();
    let vat_id = found.vat_id.filter(|_| invoice.seller.as_ref().is_none_or(|s| s.vat_id.is_none()));
    let iban = both.payment_iban.filter(|_| invoice.payment_iban.is_none());
    let filled: Vec<&str> =
        [("seller.name", found.name.is_some()), ("seller.vat_id", vat_id.is_some()), ("payment_iban", iban.is_some())]
            .into_iter()
            .filter_map(|(field, found)| found.then_some(field))
            .collect();
    if filled.is_empty() {
        return None;
    }
    let seller = invoice.seller.get_or_insert_with(Default::default);
    seller.name = found.name.or(seller.name.take());
    seller.vat_id = vat_id.or(seller.vat_id.take());
    invoice.payment_iban = iban.or(invoice.payment_iban.take());
    for field in filled {
        if let Some(&confidence) = both.confidence.get(field) {
            invoice.confidence.insert(field.to_string(), confidence * OCR_CONFIDENCE_FACTOR);
        }
    }
    invoice.source = Some(format!("{}+ocr", invoice.source.as_deref().unwrap_or("text")));
    Some(images_text)
}

/// Where a page without a text layer is read from, if at all: rendered when it shows text that could not
/// be read (Type3 glyphs, fonts without a Unicode mapping) and a renderer is given; else its largest image
/// (in a PDF with a text layer elsewhere (`scan` false), only one large enough to be a scanned page); else,
/// in a PDF without any text layer, rendered (glyphs drawn as outlines).
fn page_source(file: &PdfFile, page: PdfPage, renderer: Option<&dyn PageRenderer>, scan: bool) -> Option<PageSource> {
    if renderer.is_some() && file.shows_text(page) {
        return Some(PageSource::Render);
    }
    match file.page_image(page) {
        Some(Ok((encoded, width))) => {
            let large = encoded.width.saturating_mul(encoded.height) >= MIN_SCANNED_PAGE_PIXELS;
            (scan || large).then_some(PageSource::Image(Ok((encoded, width))))
        }
        Some(Err(e)) => scan.then_some(PageSource::Image(Err(e))),
        None => (scan && renderer.is_some()).then_some(PageSource::Render),
    }
}

/// Reads every page OCR may read of a PDF without a text layer.
fn read_scan(
    file: &PdfFile,
    bytes: &[u8],
    engine: &dyn Ocr,
    renderer: Option<&dyn PageRenderer>,
    reading: Reading,
) -> Result<(String, ReadWords), ExtractError> {
    let mut text = String::new();
    let mut words = ReadWords::default();
    let mut first_error = None;
    for page in file.ocr_pages() {
        let Some(source) = page_source(file, page, renderer, true) else { continue };
        match read_page(file, bytes, page, source, engine, renderer, reading) {
            Ok(Some((page_text, page_words))) => {
                text.push_str(&page_text);
                text.push_str("\n\n");
                words.0.extend(page_words.0);
            }
            Ok(None) => {}
            Err(e @ ExtractError::OcrUnavailable { .. }) => return Err(e),
            Err(e) => {
                tracing::debug!(page = page.number, error = %e, "a page could not be read by OCR");
                first_error.get_or_insert(e);
            }
        }
    }
    if text.chars().filter(|c| c.is_alphanumeric()).count() < MIN_OCR_CHARS {
        return Err(first_error.unwrap_or(ExtractError::NoText));
    }
    Ok((text, words))
}

/// One page read by OCR from `source`: its image decoded, or the page rendered; then straightened (and
/// scaled up when coarse), recognised and laid out as text, with the words as placed in it. `None` when there
/// is no renderer to render with.
fn read_page(
    file: &PdfFile,
    bytes: &[u8],
    page: PdfPage,
    source: PageSource,
    engine: &dyn Ocr,
    renderer: Option<&dyn PageRenderer>,
    reading: Reading,
) -> Result<Option<(String, ReadWords)>, ExtractError> {
    let (image, dpi) = match (source, renderer) {
        (PageSource::Image(found), _) => {
            let (encoded, page_width_points) = found?;
            let image = catch_unwind(AssertUnwindSafe(|| raster::decode(&encoded))).unwrap_or_else(|_| {
                Err(ExtractError::InvalidImage { reason: "the image decoder failed on malformed data".into() })
            })?;
            // The scan's resolution, from the image's width across the page's.
            let dpi = (image.width as f64 / (page_width_points / 72.0)).clamp(50.0, 1200.0);
            (image, dpi)
        }
        (PageSource::Render, Some(renderer)) => {
            let request = render::request_for(bytes, page.number, file.page_size(page))?;
            (renderer.render(&request)?, f64::from(request.dpi))
        }
        (PageSource::Render, None) => return Ok(None),
    };
    let (image, dpi) = raster::prepare_for_ocr(&image, dpi, MIN_OCR_DPI, reading == Reading::WithoutRules);
    let words = engine.recognize(&OcrPage { image, dpi: dpi.round() as u32 })?;
    Ok(Some(layout_words(&words)))
}

/// Words with a confidence below this are noise (speckles, rules, stamps read as letters).
const MIN_WORD_CONFIDENCE: f32 = 20.0;

/// Parses tesseract's TSV output (`level page block par line word left top width height conf text`),
/// keeping the words (level 5) that hold text. Malformed rows are skipped.
pub fn parse_tsv(tsv: &str) -> Vec<OcrWord> {
    tsv.lines()
        .skip_while(|line| line.starts_with("level"))
        .filter_map(|row| {
            let cols: Vec<&str> = row.splitn(12, '\t').collect();
            let [level, _page, block, par, line, _word, left, top, width, height, conf, text] = cols[..] else {
                return None;
            };
            let num = |s: &str| s.trim().parse::<u32>().ok();
            if num(level)? != 5 || text.trim().is_empty() {
                return None;
            }
            Some(OcrWord {
                text: text.trim().to_string(),
                left: num(left)?,
                top: num(top)?,
                width: num(width)?,
                height: num(height)?,
                confidence: conf.trim().parse().ok()?,
                line: (num(block)?, num(par)?, num(line)?),
            })
        })
        .collect()
}

/// Lays words out as text: one text line per row of the page, words in a row ordered left to right, a
/// single space between the words of a phrase and at least two (up to the word's column on the page)
/// across a wider gap, and a blank line where the page leaves a wide vertical gap.
///
/// Rows are rebuilt from the page, not taken from the engine: an engine that reads a two-column block as
/// two blocks gives the same row two lines, which belong on one (`Date   12.03.2024`).
pub fn layout(words: &[OcrWord]) -> String {
    layout_words(words).0
}

/// [`layout`], and the words as placed in its lines.
pub(crate) fn layout_words(words: &[OcrWord]) -> (String, ReadWords) {
    let cleaned: Vec<OcrWord> = words
        .iter()
        .filter(|w| w.confidence >= MIN_WORD_CONFIDENCE && w.width > 0 && w.height > 0)
        .filter_map(|w| Some(OcrWord { text: clean_word(&w.text)?, ..w.clone() }))
        .collect();
    let words: Vec<&OcrWord> = cleaned.iter().collect();
    let mut placed = ReadWords::default();
    if words.is_empty() {
        return (String::new(), placed);
    }
    let char_width = median(
        words.iter().filter(|w| w.text.chars().count() >= 3).map(|w| w.width as f32 / w.text.chars().count() as f32),
    )
    .unwrap_or(10.0)
    .max(1.0);

    // The engine's lines, each with its vertical extent.
    let mut lines: Vec<EngineLine<'_>> = Vec::new();
    for word in &words {
        match lines.iter_mut().find(|l| l.id == word.line) {
            Some(line) => line.words.push(word),
            None => lines.push(EngineLine { id: word.line, words: vec![word] }),
        }
    }
    let line_height = median(lines.iter().map(|l| l.height())).unwrap_or(10.0).max(1.0);
    lines.sort_by(|a, b| a.center().total_cmp(&b.center()));

    // Rows: lines whose centres are within half a line height of the row's first line.
    let mut rows: Vec<(f32, Vec<&OcrWord>)> = Vec::new();
    for line in &lines {
        match rows.last_mut() {
            Some((center, row)) if (line.center() - *center).abs() < line_height * 0.5 => row.extend(&line.words),
            _ => rows.push((line.center(), line.words.clone())),
        }
    }

    let mut text = String::new();
    let mut previous_center: Option<f32> = None;
    for (center, mut row) in rows {
        if previous_center.is_some_and(|p| center - p > line_height * 2.2) {
            text.push('\n');
        }
        previous_center = Some(center);
        row.sort_by_key(|w| w.left);
        let mut line = String::new();
        let mut line_words: Vec<(String, f32)> = Vec::new();
        let mut right_edge: Option<u32> = None;
        for word in row {
            if let Some(right) = right_edge {
                let gap = word.left.saturating_sub(right) as f32;
                if gap < char_width * 0.3 && splits_a_token(&line, &word.text) {
                    // `571.` `04`, `RE-` `2019`: one token the engine cut in two.
                    if let Some((joined, confidence)) = line_words.last_mut() {
                        joined.push_str(&word.text);
                        *confidence = confidence.min(word.confidence);
                    }
                    line.push_str(&word.text);
                    right_edge = Some(word.left + word.width);
                    continue;
                } else if gap < char_width * 1.2 {
                    line.push(' ');
                } else {
                    let column = (word.left as f32 / char_width).round() as usize;
                    let len = line.chars().count();
                    line.extend(std::iter::repeat_n(' ', column.saturating_sub(len).max(2)));
                }
            } else {
                let column = (word.left as f32 / char_width).round() as usize;
                line.extend(std::iter::repeat_n(' ', column.min(200)));
            }
            line.push_str(&word.text);
            line_words.push((word.text.clone(), word.confidence));
            right_edge = Some(word.left + word.width);
        }
        text.push_str(line.trim_end());
        text.push('\n');
        placed.0.push(line_words);
    }
    (text, placed)
}

/// Ink that the engine read as characters: table rules (`|`, `[`, `_`), specks (`.`, `‘`, `©`) around and
/// between words. A word's stray edge characters are dropped, and a word of nothing but them; dashes
/// (cell separators, negative amounts), currency signs and `%` are kept.
fn clean_word(text: &str) -> Option<String> {
    const EDGE: &[char] =
        &['|', '[', ']', '{', '}', '_', '‘', '’', '\'', '"', '“', '”', '„', '«', '»', '©', '®', '¦', '~', '`', '*'];
    let text = text.trim_matches(EDGE);
    let text = text.trim_start_matches(['.', ',', ':', ';']);
    if text.is_empty() {
        return None;
    }
    let meaningful = text
        .chars()
        .any(|c| c.is_alphanumeric() || matches!(c, '€' | '$' | '£' | '¥' | '%' | '#' | '-' | '–' | '—' | '@'));
    meaningful.then(|| text.to_string())
}

/// Whether `next` continues the token that ends `line` when almost no gap separates them: a number after a
/// separator (`571.` `04`, `2019-` `06`), or after a letter prefix and a dash (`RE-` `2019`).
fn splits_a_token(line: &str, next: &str) -> bool {
    let ends_with_separator = line.ends_with(['.', ',', '-', '/']);
    let next_is_number = next.starts_with(|c: char| c.is_ascii_digit());
    let line_is_number_part = line.chars().rev().nth(1).is_some_and(|c| c.is_alphanumeric());
    ends_with_separator && next_is_number && line_is_number_part
}

struct EngineLine<'a> {
    id: (u32, u32, u32),
    words: Vec<&'a OcrWord>,
}

impl EngineLine<'_> {
    fn top(&self) -> f32 {
        self.words.iter().map(|w| w.top).min().unwrap_or(0) as f32
    }

    fn bottom(&self) -> f32 {
        self.words.iter().map(|w| w.top + w.height).max().unwrap_or(0) as f32
    }

    fn height(&self) -> f32 {
        self.bottom() - self.top()
    }

    fn center(&self) -> f32 {
        (self.top() + self.bottom()) / 2.0
    }
}

fn median(values: impl Iterator<Item = f32>) -> Option<f32> {
    let mut values: Vec<f32> = values.filter(|v| v.is_finite()).collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f32::total_cmp);
    Some(values[values.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(text: &str, left: u32, top: u32, line: (u32, u32, u32)) -> OcrWord {
        let width = 10 * text.chars().count() as u32;
        OcrWord { text: text.into(), left, top, width, height: 14, confidence: 90.0, line }
    }

    #[test]
    fn tsv_rows_become_words() {
        let tsv = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n\
                   1\t1\t0\t0\t0\t0\t0\t0\t1240\t1754\t-1\t\n\
                   5\t1\t2\t1\t1\t1\t100\t50\t80\t20\t95.5\tInvoice\n\
                   5\t1\t2\t1\t1\t2\t190\t50\t40\t20\t91\tNo.\n\
                   5\t1\t2\t1\t1\t3\t190\t50\t40\tbad\t91\tx\n";
        let words = parse_tsv(tsv);
        assert_eq!(words.len(), 2);
        assert_eq!(words[0].text, "Invoice");
        assert_eq!((words[1].left, words[1].confidence, words[1].line), (190, 91.0, (2, 1, 1)));
    }

    #[test]
    fn rows_are_rebuilt_across_blocks_with_column_gaps() {
        let words = [
            word("Invoice", 100, 100, (1, 1, 1)),
            word("date", 175, 102, (1, 1, 1)),
            // The value, read by the engine as another block, on the same row.
            word("12.03.2024", 500, 99, (2, 1, 1)),
            word("Total", 100, 122, (1, 1, 2)),
            word("Far", 100, 400, (3, 1, 1)),
        ];
        let text = layout(&words);
        let lines: Vec<&str> = text.lines().collect();
        let cells: Vec<&str> = lines[0].split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
        assert_eq!(cells, ["Invoice date", "12.03.2024"], "a wide gap separates the cells: {text:?}");
        assert_eq!(lines[1].trim(), "Total");
        assert_eq!(lines[2], "", "a wide vertical gap is a blank line");
        assert_eq!(lines[3].trim(), "Far");
    }

    #[test]
    fn words_cut_in_two_are_joined_and_rules_dropped() {
        let words = [
            word("Total:", 100, 100, (1, 1, 1)),
            word("|", 163, 100, (1, 1, 1)),
            word("571.", 168, 100, (1, 1, 1)),
            word("04", 209, 100, (1, 1, 1)),
            word("[20,00", 400, 100, (1, 1, 1)),
        ];
        let text = layout(&words);
        let cells: Vec<&str> = text.trim().split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
        assert_eq!(cells, ["Total: 571.04", "20,00"], "{text:?}");
    }

    #[test]
    fn noise_is_dropped() {
        let mut noise = word("~~", 10, 10, (1, 1, 1));
        noise.confidence = 5.0;
        assert_eq!(layout(&[noise]), "");
    }
}
