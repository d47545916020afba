//! Inflating Flate data leniently and under a cap: what the PDF reader (`prepare`) and the repair of damaged
//! files (`repair`) share. Readers keep what a damaged stream yields before its damage, so this does too.

use flate2::{Decompress, FlushDecompress, Status};

/// What came of the data.
pub(crate) enum Inflated {
    /// The deflate stream ended where it should.
    Complete(Vec<u8>),
    /// The data ended early or turned corrupt: what inflated before that.
    Partial(Vec<u8>),
}

/// More than the cap would come out.
#[derive(Debug)]
pub(crate) struct TooLarge;

/// Inflates `data` (with a zlib header when `zlib_header`) until its end, its first corrupt byte or the end
/// of the deflate stream, at most `max` bytes of output. Output comes in small chunks, so that little of what
/// was inflated before a corrupt byte (a checksum that fails, say) is lost with the call that meets it.
pub(crate) fn inflate(data: &[u8], zlib_header: bool, max: u64) -> Result<Inflated, TooLarge> {
    let mut inflater = Decompress::new(zlib_header);
    let mut chunk = [0u8; 16 * 1024];
    let capacity = (data.len() as u64).saturating_mul(4).min(max).min(64 * 1024 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(capacity as usize);
    loop {
        let (read, written) = (inflater.total_in(), inflater.total_out());
        let input = usize::try_from(read).ok().and_then(|r| data.get(r..)).unwrap_or_default();
        let status = inflater.decompress(input, &mut chunk, FlushDecompress::None);
        let produced = usize::try_from(inflater.total_out() - written).unwrap_or(chunk.len()).min(chunk.len());
        out.extend_from_slice(&chunk[..produced]);
        if out.len() as u64 > max {
            return Err(TooLarge);
        }
        match status {
            Ok(Status::StreamEnd) => return Ok(Inflated::Complete(out)),
            Ok(_) if inflater.total_in() == read && produced == 0 => break,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(Inflated::Partial(out))
}

/// Inflates a PDF Flate stream as readers do: the deflate data after its two-byte zlib header, without
/// checking the checksum at its end (a wrong one loses nothing); what a damaged stream yields before the
/// damage is kept. When the header is not a valid zlib header (damaged, or a writer that left it out), the
/// data is tried both after those two bytes and from the start, and the reading that ends where a deflate
/// stream should, else the longer one, wins.
pub(crate) fn inflate_lenient(data: &[u8], max: u64) -> Result<Vec<u8>, TooLarge> {
    let after_header = data.get(2..).unwrap_or_default();
    let zlib_header =
        data.len() >= 2 && data[0] & 0x0f == 8 && (u16::from(data[0]) << 8 | u16::from(data[1])) % 31 == 0;
    if zlib_header {
        return Ok(inflate(after_header, false, max)?.into_bytes());
    }
    let skipped = inflate(after_header, false, max)?;
    if let Inflated::Complete(out) = skipped {
        return Ok(out);
    }
    let whole = inflate(data, false, max)?;
    match (skipped, whole) {
        (_, Inflated::Complete(out)) => Ok(out),
        (skipped, whole) => {
            let (a, b) = (skipped.into_bytes(), whole.into_bytes());
            Ok(if a.len() >= b.len() { a } else { b })
        }
    }
}

impl Inflated {
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        match self {
            Inflated::Complete(out) | Inflated::Partial(out) => out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).expect("in memory");
        encoder.finish().expect("in memory")
    }

    #[test]
    fn a_whole_stream_inflates_and_the_cap_stops_a_bomb() {
        let compressed = zlib(&vec![b'x'; 100_000]);
        assert_eq!(inflate_lenient(&compressed, 1 << 20).expect("whole").len(), 100_000);
        assert!(inflate_lenient(&compressed, 1000).is_err());
    }

    #[test]
    fn a_stream_cut_short_or_with_a_bad_checksum_keeps_its_text() {
        // Varied enough that half of the compressed bytes hold many symbols past the block's header.
        let text: Vec<u8> = (0..3000).flat_map(|i| format!("BT 72 {i} Td (Line {i}) Tj ET\n").into_bytes()).collect();
        let compressed = zlib(&text);
        let cut = inflate_lenient(&compressed[..compressed.len() / 2], 1 << 20).expect("what is there");
        assert!(!cut.is_empty() && text.starts_with(&cut), "{}", cut.len());
        let mut bad_checksum = compressed.clone();
        let last = bad_checksum.len() - 1;
        bad_checksum[last] ^= 0xff;
        let kept = inflate_lenient(&bad_checksum, 1 << 20).expect("all of it");
        assert!(kept == text, "{} of {} bytes", kept.len(), text.len());
        let mut bad_header = compressed;
        bad_header[0] = 0;
        let kept = inflate_lenient(&bad_header, 1 << 20).expect("the deflate data");
        assert!(kept == text, "{} of {} bytes", kept.len(), text.len());
    }
}
