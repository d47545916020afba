//! Rendering PDF pages to images, for OCR of pages whose text cannot be read and that hold no image to read
//! instead: glyphs drawn by Type3 procedures or as outlines, fonts without a Unicode mapping.
//!
//! `nova-extract` does no I/O, so it does not rasterise PDFs itself: the caller passes a renderer
//! ([`PageRenderer`]) beside its OCR engine. `nova_app::engines::Pdftoppm` is the renderer NOVA ships; tests
//! can pass their own. The resolution is chosen here, not by the renderer: [`RENDER_DPI`], lowered for a
//! large page so that it stays under [`MAX_RENDER_PIXELS`], and a page too large even at [`MIN_RENDER_DPI`]
//! is refused ([`ExtractError::PageTooLarge`]) before anything runs. The request carries the pixel bounds too,
//! so that a renderer that reads the page's size differently still cannot exceed them.

use crate::raster::GrayImage;
use crate::ExtractError;

/// The resolution pages are rendered at: clean rendered glyphs read well at it, and a page takes a second
/// or two of OCR.
pub const RENDER_DPI: u32 = 200;
/// The lowest resolution a large page is rendered at; below it, small print is no longer legible.
pub const MIN_RENDER_DPI: u32 = 72;
/// The most pixels one rendered page may have: an A4 page at 200 dpi is 3.9 million, A3 7.8 million.
pub const MAX_RENDER_PIXELS: u64 = 16_000_000;
/// The longest side of a rendered page, in pixels (a long receipt at 200 dpi is about 4 metres of paper).
pub const MAX_RENDER_SIDE: u32 = 32_000;

/// One page to render.
#[derive(Debug, Clone, Copy)]
pub struct RenderRequest<'a> {
    /// The whole PDF, as given to extraction.
    pub pdf: &'a [u8],
    /// The page's number, from 1.
    pub page: u32,
    /// The resolution, in dots per inch.
    pub dpi: u32,
    /// The widest image the renderer may return; a renderer crops to it rather than allocate more.
    pub max_width: u32,
    /// The tallest image the renderer may return.
    pub max_height: u32,
}

/// A PDF page renderer: a page in, its grey levels out.
///
/// Errors are [`ExtractError::RendererUnavailable`] when the renderer cannot run at all (not installed), and
/// [`ExtractError::RenderFailed`] when it ran and failed on this page (a time or memory limit, a crash, a
/// PDF it cannot read).
pub trait PageRenderer: Send + Sync {
    fn render(&self, request: &RenderRequest<'_>) -> Result<GrayImage, ExtractError>;
}

/// The request for page `page` (from 1) of a page `width` by `height` points: [`RENDER_DPI`], or less for a
/// page too large for [`MAX_RENDER_PIXELS`] at it; a page too large even at [`MIN_RENDER_DPI`] is
/// [`ExtractError::PageTooLarge`].
pub(crate) fn request_for<'a>(
    pdf: &'a [u8],
    page: u32,
    (width, height): (f64, f64),
) -> Result<RenderRequest<'a>, ExtractError> {
    let too_large =
        || ExtractError::PageTooLarge { width_points: width.round() as u64, height_points: height.round() as u64 };
    if !(width.is_finite() && height.is_finite() && width >= 1.0 && height >= 1.0) {
        return Err(too_large());
    }
    let pixels_at = |dpi: f64| (width / 72.0 * dpi) * (height / 72.0 * dpi);
    let longest_at = |dpi: f64| width.max(height) / 72.0 * dpi;
    // The resolution at which the page just fits both caps.
    let fitting = (RENDER_DPI as f64)
        .min((MAX_RENDER_PIXELS as f64 / pixels_at(1.0)).sqrt())
        .min(MAX_RENDER_SIDE as f64 / longest_at(1.0))
        .floor();
    if fitting < MIN_RENDER_DPI as f64 {
        return Err(too_large());
    }
    let dpi = fitting as u32;
    // One pixel of slack each way for the renderer's rounding.
    let side = |points: f64| ((points / 72.0 * dpi as f64).ceil() as u32 + 1).min(MAX_RENDER_SIDE);
    Ok(RenderRequest { pdf, page, dpi, max_width: side(width), max_height: side(height) })
}

/// Parses a binary PGM (`P5`, 8-bit) as a renderer writes it, refusing one larger than the request's bounds
/// or [`MAX_RENDER_PIXELS`], or whose samples are short.
pub fn parse_pgm(bytes: &[u8], request: &RenderRequest<'_>) -> Result<GrayImage, ExtractError> {
    let bad =
        |why: &str| ExtractError::RenderFailed { reason: format!("the rendered page is not a usable PGM: {why}") };
    let mut rest = bytes.strip_prefix(b"P5").ok_or_else(|| bad("no P5 signature"))?;
    let mut fields = [0u64; 3];
    for field in &mut fields {
        // Whitespace and `#` comments separate the header's three numbers.
        loop {
            match rest.first() {
                Some(c) if c.is_ascii_whitespace() => rest = &rest[1..],
                Some(b'#') => {
                    let end = rest.iter().position(|&c| c == b'\n').ok_or_else(|| bad("an unterminated comment"))?;
                    rest = &rest[end..];
                }
                _ => break,
            }
        }
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return Err(bad("a malformed header"));
        }
        *field = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("a malformed header"))?;
        rest = &rest[digits..];
    }
    // A single whitespace byte ends the header.
    rest = match rest.split_first() {
        Some((c, samples)) if c.is_ascii_whitespace() => samples,
        _ => return Err(bad("no samples")),
    };
    let [width, height, maxval] = fields;
    if maxval != 255 {
        return Err(bad(&format!("{maxval} grey levels where 256 are expected")));
    }
    if width == 0 || height == 0 {
        return Err(bad("no pixels"));
    }
    if width > u64::from(request.max_width)
        || height > u64::from(request.max_height)
        || width.saturating_mul(height) > MAX_RENDER_PIXELS
    {
        return Err(ExtractError::RenderFailed {
            reason: format!(
                "the renderer returned {width}x{height} pixels, more than the {}x{} asked for",
                request.max_width, request.max_height
            ),
        });
    }
    let count = (width * height) as usize;
    if rest.len() < count {
        return Err(bad(&format!("{} bytes of samples where {count} are needed", rest.len())));
    }
    Ok(GrayImage { width: width as usize, height: height as usize, pixels: rest[..count].to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_a4_page_renders_at_the_default_resolution() {
        let request = request_for(b"", 1, (595.0, 842.0)).unwrap();
        assert_eq!(request.dpi, RENDER_DPI);
        assert_eq!((request.max_width, request.max_height), (1654, 2340));
    }

    #[test]
    fn a_large_page_is_rendered_coarser_and_a_huge_one_refused() {
        // A0 (841 x 1189 mm) fits only below the default resolution.
        let a0 = request_for(b"", 1, (2384.0, 3370.0)).unwrap();
        assert!(a0.dpi < RENDER_DPI && a0.dpi >= MIN_RENDER_DPI, "{}", a0.dpi);
        assert!(u64::from(a0.max_width) * u64::from(a0.max_height) <= MAX_RENDER_PIXELS + 20_000);
        for size in [(14_400.0, 14_400.0), (1e12, 1e12), (f64::NAN, 10.0), (0.0, 842.0), (100.0, 3e6)] {
            let err = request_for(b"", 1, size).unwrap_err();
            assert_eq!(err.code(), "page_too_large", "{size:?}");
        }
    }

    #[test]
    fn pgm_output_is_checked_against_the_request() {
        let request = RenderRequest { pdf: b"", page: 1, dpi: 200, max_width: 3, max_height: 2 };
        let image = parse_pgm(b"P5\n# made by a test\n3 2\n255\n\x00\x10\x20\x30\x40\x50", &request).unwrap();
        assert_eq!((image.width, image.height), (3, 2));
        assert_eq!(image.pixels, vec![0, 0x10, 0x20, 0x30, 0x40, 0x50]);
        for bad in [
            &b"P6\n3 2\n255\n"[..],
            b"P5\n3 2\n255\n\x00",
            b"P5\n4 2\n255\n\x00\x00\x00\x00\x00\x00\x00\x00",
            b"P5 3",
            b"P5\n3 2\n65535\n",
        ] {
            assert_eq!(parse_pgm(bad, &request).unwrap_err().code(), "render_failed", "{bad:?}");
        }
    }
}
