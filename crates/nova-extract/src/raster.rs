//! Page images for OCR: decoding a PDF image XObject to grey levels, estimating and undoing the small
//! rotation of a scan, and scaling it to the resolution OCR reads best.
//!
//! Image bytes are untrusted: the pixel count is checked against [`MAX_PIXELS`] from the declared size,
//! before anything is decoded, and a decoder error is an [`ExtractError::InvalidImage`].

use std::io::Read;

use crate::ExtractError;

/// Largest image decoded: 64 megapixels, an A4 page scanned at 600 dpi with room to spare.
pub(crate) const MAX_PIXELS: u64 = 64_000_000;
/// The steepest rotation looked for, in degrees. Scanners and phones rarely skew a page by more.
const MAX_SKEW_DEGREES: f64 = 5.0;
/// Skew estimation works on a copy this many pixels wide at most: enough for text lines, cheap to project.
const SKEW_WORK_WIDTH: usize = 640;

/// A grey-level image, one byte per pixel (0 black, 255 white), rows top to bottom.
#[derive(Clone, PartialEq, Eq)]
pub struct GrayImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl std::fmt::Debug for GrayImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GrayImage({}x{})", self.width, self.height)
    }
}

/// How an image XObject's bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// `/DCTDecode`: a JPEG file.
    Jpeg,
    /// `/FlateDecode` without a predictor: zlib-compressed samples.
    Flate,
    /// No filter: the samples themselves.
    Raw,
}

/// An image XObject as the PDF holds it, not decoded yet.
#[derive(Debug, Clone)]
pub(crate) struct EncodedImage {
    pub width: u64,
    pub height: u64,
    /// Colour components per pixel from the colour space (1 grey, 3 RGB, 4 CMYK); JPEGs say their own.
    pub components: u8,
    pub bits_per_component: u8,
    pub encoding: Encoding,
    pub data: Vec<u8>,
}

impl GrayImage {
    /// A white image.
    pub fn blank(width: usize, height: usize) -> Self {
        Self { width, height, pixels: vec![255; width * height] }
    }

    fn at(&self, x: usize, y: usize) -> u8 {
        self.pixels[y * self.width + x]
    }

    /// The image as binary PGM (`P5`), a format every OCR engine reads.
    pub fn to_pgm(&self) -> Vec<u8> {
        let mut out = format!("P5\n{} {}\n255\n", self.width, self.height).into_bytes();
        out.extend_from_slice(&self.pixels);
        out
    }
}

/// Decodes an image XObject to grey levels, refusing one over [`MAX_PIXELS`] before decoding it.
pub(crate) fn decode(image: &EncodedImage) -> Result<GrayImage, ExtractError> {
    check_size(image.width, image.height)?;
    match image.encoding {
        Encoding::Jpeg => decode_jpeg(&image.data),
        Encoding::Flate => {
            let expected = sample_bytes(image)?;
            let mut samples = Vec::new();
            flate2::read::ZlibDecoder::new(image.data.as_slice())
                .take(expected as u64 + 1)
                .read_to_end(&mut samples)
                .map_err(|e| invalid_image(&format!("inflating the samples: {e}")))?;
            samples_to_gray(image, &samples)
        }
        Encoding::Raw => samples_to_gray(image, &image.data),
    }
}

fn check_size(width: u64, height: u64) -> Result<(), ExtractError> {
    if width == 0 || height == 0 {
        return Err(invalid_image("the image has no pixels"));
    }
    if width.saturating_mul(height) > MAX_PIXELS {
        return Err(ExtractError::ImageTooLarge { width, height });
    }
    Ok(())
}

fn invalid_image(reason: &str) -> ExtractError {
    ExtractError::InvalidImage { reason: reason.to_string() }
}

/// Bytes of samples an unfiltered image of this size holds (rows padded to whole bytes).
fn sample_bytes(image: &EncodedImage) -> Result<usize, ExtractError> {
    if !matches!(image.bits_per_component, 1 | 8) || !matches!(image.components, 1 | 3 | 4) {
        return Err(invalid_image(&format!(
            "unsupported sample layout: {} components of {} bits",
            image.components, image.bits_per_component
        )));
    }
    let row_bits = image.width * u64::from(image.components) * u64::from(image.bits_per_component);
    usize::try_from(row_bits.div_ceil(8) * image.height).map_err(|_| invalid_image("the image is too large"))
}

fn samples_to_gray(image: &EncodedImage, samples: &[u8]) -> Result<GrayImage, ExtractError> {
    let expected = sample_bytes(image)?;
    if samples.len() < expected {
        return Err(invalid_image(&format!("{} bytes of samples where {expected} are needed", samples.len())));
    }
    let (width, height) = (image.width as usize, image.height as usize);
    let mut gray = GrayImage::blank(width, height);
    if image.bits_per_component == 1 {
        // One bit per pixel, 0 black, for grey; other colour spaces are refused by `sample_bytes`'s caller.
        if image.components != 1 {
            return Err(invalid_image("1-bit colour images are not supported"));
        }
        let row_bytes = width.div_ceil(8);
        for y in 0..height {
            for x in 0..width {
                let bit = samples[y * row_bytes + x / 8] >> (7 - x % 8) & 1;
                gray.pixels[y * width + x] = if bit == 1 { 255 } else { 0 };
            }
        }
        return Ok(gray);
    }
    let n = usize::from(image.components);
    for (out, px) in gray.pixels.iter_mut().zip(samples.chunks_exact(n)) {
        *out = match *px {
            [g] => g,
            [r, g, b] => luma(r, g, b),
            [c, m, y, k] => {
                let ink = |v: u8| 255 - (u16::from(v) + u16::from(k)).min(255) as u8;
                luma(ink(c), ink(m), ink(y))
            }
            _ => 255,
        };
    }
    Ok(gray)
}

fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((299 * u32::from(r) + 587 * u32::from(g) + 114 * u32::from(b)) / 1000) as u8
}

/// Decodes a JPEG straight to grey levels, checking the size its header declares first.
pub(crate) fn decode_jpeg(data: &[u8]) -> Result<GrayImage, ExtractError> {
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;

    let side_limit = MAX_PIXELS as usize;
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::Luma)
        .set_max_width(side_limit)
        .set_max_height(side_limit);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(std::io::Cursor::new(data), options);
    decoder.decode_headers().map_err(|e| invalid_image(&format!("JPEG: {e:?}")))?;
    let info = decoder.info().ok_or_else(|| invalid_image("JPEG: no image header"))?;
    check_size(u64::from(info.width), u64::from(info.height))?;
    let pixels = decoder.decode().map_err(|e| invalid_image(&format!("JPEG: {e:?}")))?;
    let (width, height) = (usize::from(info.width), usize::from(info.height));
    if pixels.len() != width * height {
        return Err(invalid_image("JPEG: the decoder returned an unexpected number of samples"));
    }
    Ok(GrayImage { width, height, pixels })
}

// ---------------------------------------------------------------------------------------------------------
// Deskew

/// The angle in degrees (positive: clockwise on screen) by which the page's text lines are rotated, within
/// ±[`MAX_SKEW_DEGREES`].
///
/// Projection profiles: the dark pixels of a downscaled, binarised copy are projected onto the vertical
/// axis of the page turned by each candidate angle; the text lines line up (the profile is sharpest, the
/// sum of its squared bins largest) at the page's own angle. A coarse pass in quarter degrees is refined
/// in twentieths around its best.
pub fn estimate_skew(image: &GrayImage) -> f64 {
    let small = downscale(image, SKEW_WORK_WIDTH);
    let threshold = otsu_threshold(&small);
    let (cx, cy) = (small.width as f64 / 2.0, small.height as f64 / 2.0);
    let ink: Vec<(f64, f64)> = (0..small.height)
        .flat_map(|y| (0..small.width).map(move |x| (x, y)))
        .filter(|&(x, y)| small.at(x, y) < threshold)
        .map(|(x, y)| (x as f64 - cx, y as f64 - cy))
        .collect();
    // A blank page, or one that is all ink, has no lines to align.
    if ink.len() < 32 || ink.len() > small.pixels.len() / 2 {
        return 0.0;
    }
    let diagonal = (small.width as f64).hypot(small.height as f64);
    let score = |degrees: f64| -> f64 {
        let (sin, cos) = degrees.to_radians().sin_cos();
        let mut bins = vec![0u32; diagonal as usize + 2];
        for &(x, y) in &ink {
            let row = y * cos - x * sin + diagonal / 2.0;
            if let Some(bin) = bins.get_mut(row.max(0.0) as usize) {
                *bin += 1;
            }
        }
        bins.iter().map(|&b| f64::from(b) * f64::from(b)).sum()
    };
    let best_of = |candidates: Vec<f64>| -> f64 {
        candidates
            .into_iter()
            .map(|a| (a, score(a)))
            .fold((0.0, f64::MIN), |best, c| if c.1 > best.1 { c } else { best })
            .0
    };
    let steps = (MAX_SKEW_DEGREES / 0.25) as i32;
    let coarse = best_of((-steps..=steps).map(|i| f64::from(i) * 0.25).collect());
    best_of((-5..=5).map(|i| coarse + f64::from(i) * 0.05).collect())
}

/// Rotates the content by `degrees` (positive: clockwise on screen) about the centre and scales it by
/// `scale`, with bilinear sampling; what comes in from outside the page is white.
pub fn rotate_and_scale(image: &GrayImage, degrees: f64, scale: f64) -> GrayImage {
    let width = ((image.width as f64 * scale).round() as usize).max(1);
    let height = ((image.height as f64 * scale).round() as usize).max(1);
    let mut out = GrayImage::blank(width, height);
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (src_cx, src_cy) = (image.width as f64 / 2.0, image.height as f64 / 2.0);
    let (dst_cx, dst_cy) = (width as f64 / 2.0, height as f64 / 2.0);
    for y in 0..height {
        let dy = (y as f64 + 0.5 - dst_cy) / scale;
        for x in 0..width {
            let dx = (x as f64 + 0.5 - dst_cx) / scale;
            // The inverse rotation finds where this pixel comes from.
            let sx = src_cx + dx * cos + dy * sin - 0.5;
            let sy = src_cy - dx * sin + dy * cos - 0.5;
            out.pixels[y * width + x] = bilinear(image, sx, sy);
        }
    }
    out
}

fn bilinear(image: &GrayImage, x: f64, y: f64) -> u8 {
    if x < -0.5 || y < -0.5 || x > image.width as f64 - 0.5 || y > image.height as f64 - 0.5 {
        return 255;
    }
    let x = x.clamp(0.0, (image.width - 1) as f64);
    let y = y.clamp(0.0, (image.height - 1) as f64);
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(image.width - 1), (y0 + 1).min(image.height - 1));
    let (fx, fy) = (x - x0 as f64, y - y0 as f64);
    let top = f64::from(image.at(x0, y0)) * (1.0 - fx) + f64::from(image.at(x1, y0)) * fx;
    let bottom = f64::from(image.at(x0, y1)) * (1.0 - fx) + f64::from(image.at(x1, y1)) * fx;
    (top * (1.0 - fy) + bottom * fy).round() as u8
}

/// A copy at most `max_width` wide, each pixel the mean of the block it covers.
fn downscale(image: &GrayImage, max_width: usize) -> GrayImage {
    let factor = image.width.div_ceil(max_width).max(1);
    if factor == 1 {
        return image.clone();
    }
    let (width, height) = (image.width / factor, image.height / factor);
    let mut out = GrayImage::blank(width.max(1), height.max(1));
    for y in 0..height {
        for x in 0..width {
            let mut sum = 0u32;
            for yy in y * factor..(y + 1) * factor {
                let row = &image.pixels[yy * image.width + x * factor..yy * image.width + (x + 1) * factor];
                sum += row.iter().map(|&p| u32::from(p)).sum::<u32>();
            }
            out.pixels[y * out.width + x] = (sum / (factor * factor) as u32) as u8;
        }
    }
    out
}

/// Otsu's threshold: the grey level that best separates ink from paper. Pixels below it are ink.
fn otsu_threshold(image: &GrayImage) -> u8 {
    let mut histogram = [0u64; 256];
    for &p in &image.pixels {
        histogram[usize::from(p)] += 1;
    }
    let total = image.pixels.len() as f64;
    let sum_all: f64 = histogram.iter().enumerate().map(|(v, &n)| v as f64 * n as f64).sum();
    let (mut weight_dark, mut sum_dark) = (0.0, 0.0);
    let (mut best, mut best_variance) = (128u8, -1.0);
    for (level, &count) in histogram.iter().enumerate() {
        weight_dark += count as f64;
        sum_dark += level as f64 * count as f64;
        let weight_light = total - weight_dark;
        if weight_dark == 0.0 || weight_light == 0.0 {
            continue;
        }
        let mean_dark = sum_dark / weight_dark;
        let mean_light = (sum_all - sum_dark) / weight_light;
        let variance = weight_dark * weight_light * (mean_dark - mean_light).powi(2);
        if variance > best_variance {
            best_variance = variance;
            best = (level + 1).min(255) as u8;
        }
    }
    best
}

/// Straightens a page and scales it up to `min_dpi` when it was scanned coarser (its scan resolution being
/// `dpi`); with `without_rules`, takes out its ruling lines too. Returns the image and its new resolution.
pub(crate) fn prepare_for_ocr(image: &GrayImage, dpi: f64, min_dpi: f64, without_rules: bool) -> (GrayImage, f64) {
    let skew = estimate_skew(image);
    let scale = (min_dpi / dpi).clamp(1.0, 4.0);
    // Below a twentieth of a degree a rotation blurs more than it straightens.
    let (mut image, dpi) = if skew.abs() < 0.05 && scale == 1.0 {
        (image.clone(), dpi)
    } else {
        (rotate_and_scale(image, -skew, scale), dpi * scale)
    };
    if without_rules {
        remove_rules(&mut image, dpi);
    }
    (image, dpi)
}

// ---------------------------------------------------------------------------------------------------------
// Ruling lines

/// A straight run of ink at least this long (in inches) is a ruling line, not part of a character: the
/// widest glyphs of body text are a sixth of an inch.
const MIN_RULE_INCHES: f64 = 0.6;
/// A ruling line is at most this thick (in inches); a longer run in a thicker band is a shaded cell or a
/// bar, whose text must stay.
const MAX_RULE_THICKNESS_INCHES: f64 = 0.04;

/// Whitens the ruling lines of tables and boxes: thin horizontal and vertical runs of ink longer than
/// [`MIN_RULE_INCHES`]. A page segmenter takes a ruled table for a picture and leaves its text unread;
/// without the rules the cells read as the columns of text they are.
pub(crate) fn remove_rules(image: &mut GrayImage, dpi: f64) {
    let min_run = (MIN_RULE_INCHES * dpi).round().max(8.0) as usize;
    let max_thickness = (MAX_RULE_THICKNESS_INCHES * dpi).round().max(2.0) as usize;
    let threshold = otsu_threshold(&downscale(image, SKEW_WORK_WIDTH));
    let (width, height) = (image.width, image.height);
    let ink: Vec<bool> = image.pixels.iter().map(|&p| p < threshold).collect();
    // The pixels of `source` in runs whose length `keeps`, the runs taken along `count` lines of `len` pixels.
    let runs = |source: &[bool],
                count: usize,
                len: usize,
                index: &dyn Fn(usize, usize) -> usize,
                keeps: &dyn Fn(usize) -> bool| {
        let mut selected = vec![false; width * height];
        for line in 0..count {
            let mut start = None;
            for i in 0..=len {
                match (start, i < len && source[index(line, i)]) {
                    (None, true) => start = Some(i),
                    (Some(s), false) => {
                        if keeps(i - s) {
                            (s..i).for_each(|j| selected[index(line, j)] = true);
                        }
                        start = None;
                    }
                    _ => {}
                }
            }
        }
        selected
    };
    let row = |y: usize, x: usize| y * width + x;
    let column = |x: usize, y: usize| y * width + x;
    let long = |run: usize| run >= min_run;
    let thin = |run: usize| run <= max_thickness;
    // Long runs along the rows that are thin down the columns are horizontal rules, and the other way round.
    let horizontal = runs(&runs(&ink, height, width, &row, &long), width, height, &column, &thin);
    let vertical = runs(&runs(&ink, width, height, &column, &long), height, width, &row, &thin);
    for (i, pixel) in image.pixels.iter_mut().enumerate() {
        if horizontal[i] || vertical[i] {
            *pixel = 255;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic page: rows of dark "words" of varying length on white, like lines of text.
    fn text_page(width: usize, height: usize) -> GrayImage {
        let mut page = GrayImage::blank(width, height);
        let mut seed = 7u32;
        for line_top in (height / 10..height * 9 / 10).step_by(28) {
            let mut x = width / 10;
            while x < width * 9 / 10 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let word = 20 + (seed >> 16) as usize % 60;
                for y in line_top..line_top + 12 {
                    for xx in x..(x + word).min(width * 9 / 10) {
                        page.pixels[y * width + xx] = 20;
                    }
                }
                x += word + 12;
            }
        }
        page
    }

    #[test]
    fn ruling_lines_are_taken_out_and_text_and_shading_kept() {
        let (width, height) = (600, 400);
        let mut page = GrayImage::blank(width, height);
        let mut paint = |x0: usize, y0: usize, x1: usize, y1: usize, level: u8| {
            for y in y0..y1 {
                for x in x0..x1 {
                    page.pixels[y * width + x] = level;
                }
            }
        };
        paint(50, 100, 550, 102, 0); // a table's horizontal rule, 2 px
        paint(300, 50, 303, 350, 0); // a vertical rule, 3 px
        paint(50, 200, 550, 240, 60); // a shaded band: long, but thick
        for x in (60..280).step_by(14) {
            paint(x, 80, x + 9, 95, 0); // letters above the rule
            paint(x, 110, x + 9, 125, 0); // and below it
        }
        let before = page.clone();
        remove_rules(&mut page, 100.0);
        let at = |image: &GrayImage, x: usize, y: usize| image.pixels[y * width + x];
        assert_eq!((at(&page, 400, 100), at(&page, 400, 101)), (255, 255), "the horizontal rule is gone");
        assert_eq!(at(&page, 301, 300), 255, "the vertical rule is gone");
        assert_eq!(at(&page, 400, 220), 60, "the shaded band stays");
        let letters =
            |image: &GrayImage| (60..280).step_by(14).all(|x| at(image, x + 4, 87) == 0 && at(image, x + 4, 117) == 0);
        assert!(letters(&before) && letters(&page), "the letters stay");
    }

    #[test]
    fn a_known_rotation_is_estimated_back() {
        let page = text_page(1000, 1400);
        assert!(estimate_skew(&page).abs() < 0.1, "an upright page reads as upright");
        for degrees in [-3.0, -1.2, 0.7, 2.5, 4.0] {
            let turned = rotate_and_scale(&page, degrees, 1.0);
            let estimate = estimate_skew(&turned);
            assert!((estimate - degrees).abs() < 0.15, "rotated by {degrees}°, estimated {estimate}°");
            let straightened = rotate_and_scale(&turned, -estimate, 1.0);
            assert!(estimate_skew(&straightened).abs() < 0.15, "straightening {degrees}° leaves no skew");
        }
    }

    #[test]
    fn blank_pages_have_no_skew() {
        assert_eq!(estimate_skew(&GrayImage::blank(300, 400)), 0.0);
    }

    #[test]
    fn scaling_doubles_the_size() {
        let page = text_page(200, 300);
        let big = rotate_and_scale(&page, 0.0, 2.0);
        assert_eq!((big.width, big.height), (400, 600));
    }

    #[test]
    fn huge_and_corrupt_images_are_refused() {
        let huge = EncodedImage {
            width: 100_000,
            height: 100_000,
            components: 1,
            bits_per_component: 8,
            encoding: Encoding::Raw,
            data: Vec::new(),
        };
        assert!(matches!(decode(&huge), Err(ExtractError::ImageTooLarge { .. })));
        let corrupt = EncodedImage {
            width: 10,
            height: 10,
            encoding: Encoding::Jpeg,
            data: vec![0xFF, 0xD8, 1, 2, 3],
            ..huge.clone()
        };
        assert!(matches!(decode(&corrupt), Err(ExtractError::InvalidImage { .. })));
        let short = EncodedImage { width: 10, height: 10, data: vec![0; 50], ..huge };
        assert!(matches!(decode(&short), Err(ExtractError::InvalidImage { .. })));
    }

    #[test]
    fn raw_samples_decode_to_grey() {
        let rgb = EncodedImage {
            width: 2,
            height: 1,
            components: 3,
            bits_per_component: 8,
            encoding: Encoding::Raw,
            data: vec![255, 255, 255, 0, 0, 0],
        };
        assert_eq!(decode(&rgb).unwrap().pixels, vec![255, 0]);
        let bits = EncodedImage { components: 1, bits_per_component: 1, data: vec![0b0100_0000], ..rgb };
        assert_eq!(decode(&bits).unwrap().pixels, vec![0, 255]);
    }
}
