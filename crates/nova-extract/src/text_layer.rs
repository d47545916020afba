//! A page's text layer as lines of text.
//!
//! `pdf-extract` interprets the content stream and reports every glyph with its position, its advance
//! width and whether it starts a new text run (a `Tj` string or an element of a `TJ` array). This module
//! collects the glyphs of a page and writes them in content-stream order, as `pdf-extract`'s own plain-text
//! output does: at the start of each run, a line break where the baseline moves down (or back to the left
//! and down) and a space where the gap is wider than a tenth of the font size. An explicit space glyph
//! followed by a gap gives two spaces, which is how table columns show.
//!
//! Some fonts give `pdf-extract` no width for some glyphs (an advance of zero). Generators that place every
//! glyph on its own then leave what looks like a gap after each such glyph, and a naive reading splits words
//! ("Inv oice", "Apri l"). The advance of such a glyph is learnt from the page itself: the smallest step
//! seen after that character when it was a run of its own, which is its width (most occurrences of a
//! letter are inside words).

use std::collections::HashMap;

use pdf_extract::{MediaBox, OutputDev, OutputError, Transform};

/// A gap wider than this fraction of the font size before a new run is a word break.
const WORD_GAP_EM: f64 = 0.1;
/// A gap this wide (in ems) on a line is a column's, not a word space: the layout reading keeps two spaces
/// at least there.
const COLUMN_GAP_EM: f64 = 1.5;
/// The furthest column the layout reading pads a line to: a page is some 100 to 200 glyphs wide, and a hostile
/// page's coordinates must not make it write millions of spaces.
const MAX_LAYOUT_COLUMN: usize = 400;
/// A run that starts this far (in ems) left of where the previous one ended, on the same line, is drawn out
/// of reading order. Less than that is kerning or an overprint for a bold effect.
const BACKWARD_EM: f64 = 1.0;
/// The advance assumed for a zero-width glyph whose width the page does not show.
const DEFAULT_ADVANCE_EM: f64 = 0.5;
/// A step after a zero-width glyph wider than this is not taken as its width when it is the only one seen:
/// few glyphs are wider, and a step that wide is more likely a glyph followed by a space.
const MAX_LONE_ADVANCE_EM: f64 = 0.7;

struct Glyph {
    x: f64,
    y: f64,
    /// Where the glyph ends by its reported width; equal to `x` when the width is unknown.
    end: f64,
    size: f64,
    text: String,
    /// The first glyph of a text run.
    run_start: bool,
}

/// Collects the glyphs of one page; [`PageText::into_text`] lays them out.
pub(crate) struct PageText {
    flip: Transform,
    glyphs: Vec<Glyph>,
    run_start: bool,
}

impl PageText {
    pub fn new() -> Self {
        Self { flip: Transform::identity(), glyphs: Vec::new(), run_start: true }
    }

    /// The page's text.
    pub fn into_text(self) -> String {
        self.flat_text()
    }

    /// The page's text in content-stream order ([`PageText::into_text`]) and as laid out on the page
    /// ([`PageText::layout_text`]).
    ///
    /// The laid-out reading is left empty when it would be much longer than the other (its padding over a
    /// hostile page's glyphs): what reads it must not cost much more than the first reading.
    pub fn into_texts(self) -> (String, String) {
        let flat = self.flat_text();
        let budget = flat.len().saturating_mul(2).saturating_add(16 * 1024);
        let layout = self.layout_text(budget).unwrap_or_default();
        (flat, layout)
    }

    /// Where each glyph ends: its reported width, else the advance learnt for it, else a default.
    fn ends(&self) -> Vec<f64> {
        let advances = self.learnt_advances();
        self.glyphs
            .iter()
            .map(|glyph| {
                if glyph.end > glyph.x {
                    glyph.end
                } else {
                    let advance = advances.get(glyph.text.as_str()).copied().unwrap_or(DEFAULT_ADVANCE_EM);
                    glyph.x + advance * glyph.size
                }
            })
            .collect()
    }

    /// The page as laid out: glyphs on one baseline make one line, left to right, each line's text placed at
    /// the column its position gives (one column per average glyph width), so that what stands in one
    /// column of the page stands in one column of the text, and labels drawn far from their values in the
    /// content stream meet them on their line. Lines are set apart by a blank line where the page leaves a
    /// gap. `None` once it is longer than `budget` bytes.
    fn layout_text(&self, budget: usize) -> Option<String> {
        let ends = self.ends();
        let mut order: Vec<usize> =
            (0..self.glyphs.len()).filter(|&i| !self.glyphs[i].text.trim().is_empty()).collect();
        if order.is_empty() {
            return Some(String::new());
        }
        // One column: the median advance of the page's glyphs.
        let mut widths: Vec<f64> = order
            .iter()
            .map(|&i| (ends[i] - self.glyphs[i].x) / self.glyphs[i].text.chars().count().max(1) as f64)
            .filter(|w| *w > 0.0)
            .collect();
        widths.sort_by(f64::total_cmp);
        let column = widths.get(widths.len() / 2).copied().filter(|w| *w > 0.0).unwrap_or(5.0);
        order.sort_by(|&a, &b| self.glyphs[a].y.total_cmp(&self.glyphs[b].y));
        // Rows: glyphs whose baselines lie within half a glyph of the row's first.
        let mut rows: Vec<Vec<usize>> = Vec::new();
        let mut row_y = f64::NEG_INFINITY;
        for i in order {
            let glyph = &self.glyphs[i];
            match rows.last_mut() {
                Some(row) if glyph.y - row_y <= glyph.size.max(1.0) * 0.5 => row.push(i),
                _ => {
                    row_y = glyph.y;
                    rows.push(vec![i]);
                }
            }
        }
        let mut out = String::new();
        let mut last: Option<(f64, f64)> = None;
        for mut row in rows {
            row.sort_by(|&a, &b| self.glyphs[a].x.total_cmp(&self.glyphs[b].x));
            let first = &self.glyphs[row[0]];
            if let Some((y, size)) = last {
                out.push('\n');
                if first.y - y > size.max(first.size) * 2.0 {
                    out.push('\n');
                }
            }
            last = Some((first.y, first.size));
            let mut line = String::new();
            let mut chars = 0usize;
            let mut end = f64::NEG_INFINITY;
            for i in row {
                let glyph = &self.glyphs[i];
                let gap = glyph.x - end;
                if chars > 0 && gap > glyph.size * WORD_GAP_EM {
                    // At least one space between words, two between columns, and as many as the position says.
                    let wanted = if gap > glyph.size * COLUMN_GAP_EM { 2 } else { 1 };
                    let target = ((glyph.x / column).round().max(0.0) as usize).min(MAX_LAYOUT_COLUMN);
                    let spaces = target.saturating_sub(chars).max(wanted);
                    line.extend(std::iter::repeat_n(' ', spaces));
                    chars += spaces;
                } else if chars == 0 {
                    let target = ((glyph.x / column).round().max(0.0) as usize).min(MAX_LAYOUT_COLUMN);
                    line.extend(std::iter::repeat_n(' ', target));
                    chars += target;
                }
                for c in glyph.text.chars() {
                    line.push(if c == '\t' { ' ' } else { c });
                    chars += 1;
                }
                end = end.max(ends[i]);
            }
            out.push_str(line.trim_end());
            if out.len() > budget {
                return None;
            }
        }
        Some(out)
    }

    fn flat_text(&self) -> String {
        let advances = self.learnt_advances();
        let mut out = String::new();
        // Before the first glyph: the top of the page, far right, so the page starts on a fresh line as
        // pdf-extract's output does.
        let (mut last_y, mut last_end) = (0.0, 100_000.0);
        for glyph in &self.glyphs {
            if glyph.run_start {
                let dy = (glyph.y - last_y).abs();
                let size = glyph.size;
                if dy > size * 1.5 {
                    out.push('\n');
                }
                // Moved to the left and down: a new line.
                if glyph.x < last_end && dy > size * 0.5 {
                    out.push('\n');
                }
                // Back to the left on the same line: text drawn out of reading order (a right-aligned value
                // before its label). Two spaces keep the two apart as cells instead of gluing them.
                if glyph.x < last_end - size * BACKWARD_EM && dy <= size * 0.5 && !out.ends_with([' ', '\n']) {
                    out.push_str("  ");
                }
                if glyph.x > last_end + size * WORD_GAP_EM {
                    out.push(' ');
                }
            }
            // A tab glyph is a space some generators put between words; the gap that follows still tells a
            // column apart.
            out.extend(glyph.text.chars().map(|c| if c == '\t' { ' ' } else { c }));
            let end = if glyph.end > glyph.x {
                glyph.end
            } else {
                let advance = advances.get(glyph.text.as_str()).copied().unwrap_or(DEFAULT_ADVANCE_EM);
                glyph.x + advance * glyph.size
            };
            (last_y, last_end) = (glyph.y, end);
        }
        out
    }

    /// The advance, in ems, of each zero-width glyph that stands as a run of its own and is followed on the
    /// same line: the smallest step seen after it.
    fn learnt_advances(&self) -> HashMap<&str, f64> {
        let mut steps: HashMap<&str, (f64, u32)> = HashMap::new();
        for pair in self.glyphs.windows(2) {
            let (glyph, next) = (&pair[0], &pair[1]);
            let alone = glyph.run_start && next.run_start;
            let size = glyph.size;
            if !alone || glyph.end > glyph.x || size <= 0.0 || (next.y - glyph.y).abs() > size * 0.5 {
                continue;
            }
            let step = (next.x - glyph.x) / size;
            if step > 0.05 {
                let entry = steps.entry(glyph.text.as_str()).or_insert((f64::MAX, 0));
                entry.0 = entry.0.min(step);
                entry.1 += 1;
            }
        }
        steps
            .into_iter()
            .filter(|(_, (step, seen))| *seen > 1 || *step <= MAX_LONE_ADVANCE_EM)
            .map(|(text, (step, _))| (text, step))
            .collect()
    }
}

impl OutputDev for PageText {
    fn begin_page(
        &mut self,
        _page: u32,
        media_box: &MediaBox,
        _art_box: Option<(f64, f64, f64, f64)>,
    ) -> Result<(), OutputError> {
        self.flip = Transform::row_major(1., 0., 0., -1., 0., media_box.ury - media_box.lly);
        Ok(())
    }

    fn end_page(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    fn output_character(
        &mut self,
        trm: &Transform,
        width: f64,
        _spacing: f64,
        font_size: f64,
        text: &str,
    ) -> Result<(), OutputError> {
        let position = trm.post_transform(&self.flip);
        // The font size on the page: the side of the square with the area of the transformed em box.
        let (sx, sy) = (font_size * (trm.m11 + trm.m21), font_size * (trm.m12 + trm.m22));
        let size = (sx * sy).abs().sqrt();
        let x = position.m31;
        if !x.is_finite() || !position.m32.is_finite() || !size.is_finite() {
            return Ok(());
        }
        self.glyphs.push(Glyph {
            x,
            y: position.m32,
            end: x + width.max(0.0) * size,
            size,
            text: text.to_string(),
            run_start: std::mem::take(&mut self.run_start),
        });
        Ok(())
    }

    fn begin_word(&mut self) -> Result<(), OutputError> {
        self.run_start = true;
        Ok(())
    }

    fn end_word(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    fn end_line(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lays out `word`s placed glyph by glyph, as some generators do: `advances` are the true widths (in
    /// ems, font size 10), `reported` says which glyphs come with their width; `space` ems between words.
    fn page(words: &[&str], advances: &HashMap<char, f64>, reported: &[char], space: f64) -> String {
        let mut page = PageText::new();
        let mut x = 0.0;
        for word in words {
            for c in word.chars() {
                let advance = advances[&c] * 10.0;
                let end = if reported.contains(&c) { x + advance } else { x };
                page.glyphs.push(Glyph { x, y: 100.0, end, size: 10.0, text: c.to_string(), run_start: true });
                x += advance;
            }
            x += space * 10.0;
        }
        page.into_text()
    }

    fn advances() -> HashMap<char, f64> {
        [('A', 0.67), ('p', 0.56), ('r', 0.33), ('i', 0.22), ('l', 0.22), ('1', 0.56), ('3', 0.56)]
            .into_iter()
            .collect()
    }

    #[test]
    fn glyphs_with_their_widths_are_read_as_words() {
        let all: Vec<char> = advances().keys().copied().collect();
        assert_eq!(page(&["April", "13"], &advances(), &all, 0.28), "\n\nApril 13");
    }

    #[test]
    fn a_glyph_without_a_width_does_not_split_its_word() {
        // 'i' and 'l' have no width: without the learnt advance, "Apri l" and "A p r i l" would come out.
        let text = page(&["April", "lip", "13", "rip"], &advances(), &['A', 'p', 'r', '1', '3'], 0.28);
        assert_eq!(text, "\n\nApril lip 13 rip");
    }

    #[test]
    fn a_value_drawn_before_its_label_stays_apart_from_it() {
        // "42" is drawn at the right first, then its label at the left of the same line.
        let mut page = PageText::new();
        for (x, text) in [(200.0, "42"), (20.0, "Number:")] {
            page.glyphs.push(Glyph { x, y: 100.0, end: x + 30.0, size: 10.0, text: text.into(), run_start: true });
        }
        assert_eq!(page.into_text(), "\n\n42  Number:");
    }

    #[test]
    fn the_layout_reading_puts_a_value_drawn_apart_on_its_label_s_line_and_in_its_column() {
        let mut page = PageText::new();
        // Drawn in this order: two labels at the top right, a block of text below, the values last.
        for (x, y, text) in [
            (300.0, 100.0, "Invoice No:"),
            (300.0, 112.0, "Date:"),
            (20.0, 200.0, "Acme Ltd"),
            (400.0, 100.0, "F2022"),
            (400.0, 112.0, "31/01/2022"),
        ] {
            let end = x + 5.0 * text.chars().count() as f64;
            page.glyphs.push(Glyph { x, y, end, size: 10.0, text: text.into(), run_start: true });
        }
        let (flat, layout) = page.into_texts();
        assert!(flat.contains("Date:\n\nAcme Ltd"), "content-stream order: {flat:?}");
        let lines: Vec<&str> = layout.lines().collect();
        let at = |needle: &str| lines.iter().find_map(|line| line.find(needle).map(|col| (*line, col)));
        let (number_line, number_col) = at("F2022").expect("the number is read");
        let (date_line, date_col) = at("31/01/2022").expect("the date is read");
        assert!(number_line.trim_start().starts_with("Invoice No:"), "{layout:?}");
        assert!(date_line.trim_start().starts_with("Date:"), "{layout:?}");
        assert_eq!(number_col, date_col, "one column: {layout:?}");
        assert!(layout.trim_end().ends_with("Acme Ltd"), "top to bottom: {layout:?}");
    }

    #[test]
    fn far_off_coordinates_do_not_make_the_layout_reading_long() {
        let mut page = PageText::new();
        for (x, text) in [(0.0, "A"), (1e12, "B"), (2e12, "C")] {
            page.glyphs.push(Glyph { x, y: 100.0, end: x + 5.0, size: 10.0, text: text.into(), run_start: true });
        }
        let (_, layout) = page.into_texts();
        assert!(layout.len() < 2 * MAX_LAYOUT_COLUMN, "{} bytes", layout.len());
        assert_eq!(layout.split_whitespace().collect::<Vec<_>>(), ["A", "B", "C"]);
        // A page of lone glyphs far to the right, each on a line of its own: padded, the reading would be
        // hundreds of times the other's length, so it is left empty.
        let mut page = PageText::new();
        for i in 0..2000 {
            let (x, y) = (if i == 0 { 0.0 } else { 1e6 }, f64::from(i) * 20.0);
            page.glyphs.push(Glyph { x, y, end: x + 5.0, size: 10.0, text: "x".into(), run_start: true });
        }
        let (flat, layout) = page.into_texts();
        assert!(flat.len() >= 2000, "{}", flat.len());
        assert_eq!(layout, "");
    }

    #[test]
    fn tab_glyphs_are_spaces() {
        let mut page = PageText::new();
        for (x, text) in [(0.0, "Acme"), (40.0, "\t"), (45.0, "Inc.")] {
            page.glyphs.push(Glyph { x, y: 100.0, end: x + 5.0, size: 10.0, text: text.into(), run_start: true });
        }
        assert_eq!(page.into_text(), "\n\nAcme  Inc.");
    }

    #[test]
    fn a_lone_wide_step_after_an_unknown_glyph_stays_a_space() {
        // 'l' is seen once, before a space: the step (0.22 + 0.6) is too wide to be its width.
        let text = page(&["Al", "13"], &advances(), &['A', '1', '3'], 0.6);
        assert_eq!(text, "\n\nAl 13");
    }
}
