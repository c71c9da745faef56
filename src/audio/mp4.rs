//! The edit list of an MP4/M4A's sound track: AAC encoders put a frame or two of priming
//! before the recording and pad its end, and the `elst` box says which samples to play.
//! symphonia 0.5 reads the box but does not apply it, so the decoder trims by this.

/// Which decoded samples an edit list keeps: `skip` from the start, then at most `keep`, both
/// in ticks of the track's `timescale` (its sample rate, in the files encoders write).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edit {
    pub skip: u64,
    pub keep: u64,
    pub timescale: u32,
}

impl Edit {
    /// `(skip, keep)` in samples at `rate`.
    pub fn in_samples(&self, rate: u32) -> (usize, usize) {
        let at = |t: u64| {
            let n = u128::from(t) * u128::from(rate) / u128::from(self.timescale.max(1));
            usize::try_from(n).unwrap_or(usize::MAX)
        };
        (at(self.skip), at(self.keep))
    }
}

/// The edit of the first sound track of an MP4 file; `None` when the bytes are not MP4, the
/// track has no edit list, or the list is more than one plain edit (rare in recordings; such a
/// file is decoded whole).
pub fn sound_edit(bytes: &[u8]) -> Option<Edit> {
    if bytes.get(4..8) != Some(b"ftyp") {
        return None;
    }
    let moov = children(bytes).find(|(kind, _)| kind == b"moov")?.1;
    let movie_scale = timescale(children(moov).find(|(kind, _)| kind == b"mvhd")?.1)?;
    for (kind, trak) in children(moov) {
        if &kind != b"trak" {
            continue;
        }
        let Some(mdia) = child(trak, b"mdia") else { continue };
        // hdlr: version+flags, pre_defined, then the handler type.
        if child(mdia, b"hdlr").and_then(|h| h.get(8..12)) != Some(b"soun") {
            continue;
        }
        let mdhd = child(mdia, b"mdhd")?;
        let (media_scale, media_duration) = (timescale(mdhd)?, media_duration(mdhd)?);
        let (segment, media_time) = single_edit(child(child(trak, b"edts")?, b"elst")?)?;
        // The segment's length is in the movie's timescale (often milliseconds); the media's
        // own duration, less the skip, is exact to the sample and bounds it. A segment of 0
        // (some muxers) plays to the end of the media.
        let rest = media_duration.saturating_sub(media_time);
        let segment = u128::from(segment) * u128::from(media_scale) / u128::from(movie_scale);
        let keep = if segment == 0 { rest } else { rest.min(u64::try_from(segment).unwrap_or(u64::MAX)) };
        return Some(Edit { skip: media_time, keep, timescale: media_scale });
    }
    None
}

/// Refuses an MP4 index whose boxes overrun their parent or whose sample tables count more
/// entries than they hold: symphonia 0.5 reserves memory for the count it reads, and a damaged
/// count (billions) aborts the process before any error can be returned.
pub fn check_index(bytes: &[u8]) -> Result<(), String> {
    if bytes.get(4..8) != Some(b"ftyp") {
        return Ok(());
    }
    match children(bytes).find(|(kind, _)| kind == b"moov") {
        Some((_, moov)) => check_boxes(moov, 0),
        None => Ok(()), // no index at all: symphonia says so
    }
}

fn check_boxes(data: &[u8], depth: usize) -> Result<(), String> {
    let damaged = |what: &str| Err(format!("is damaged (its MP4 index has {what})"));
    let mut seen = 0;
    for (kind, body) in children(data) {
        seen += body.len() + 8;
        // (entries counted at, bytes before the first entry, bytes per entry) of the tables
        // symphonia sizes by their count.
        let table = match &kind {
            b"stts" | b"ctts" => Some((4, 8, 8)),
            b"stsc" => Some((4, 8, 12)),
            b"stco" => Some((4, 8, 4)),
            b"co64" => Some((4, 8, 8)),
            b"stsz" if be_u32(body, 4) == Some(0) => Some((8, 12, 4)),
            b"elst" => Some((4, 8, if body.first() == Some(&1) { 20 } else { 12 })),
            _ => None,
        };
        if let Some((at, head, each)) = table {
            let count = be_u32(body, at).map(u64::from);
            if count.is_none_or(|n| n.saturating_mul(each) > body.len().saturating_sub(head) as u64) {
                return damaged(&format!("a `{}` table longer than its box", String::from_utf8_lossy(&kind)));
            }
        }
        let container = matches!(&kind, b"trak" | b"mdia" | b"minf" | b"stbl" | b"edts" | b"mvex" | b"moof" | b"traf");
        if container && depth < 8 {
            check_boxes(body, depth + 1)?;
        }
    }
    // The walk stops at a box that overruns its parent: what it did not cover is such a box.
    if seen < data.len() && data.len() - seen >= 8 {
        return damaged("a box larger than the box holding it");
    }
    Ok(())
}

/// The boxes inside `data`, as (type, body); stops at the first malformed header.
fn children(mut data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    std::iter::from_fn(move || {
        let size = u32::from_be_bytes(data.get(0..4)?.try_into().ok()?) as u64;
        let kind: [u8; 4] = data.get(4..8)?.try_into().ok()?;
        let (header, size) = match size {
            0 => (8, data.len() as u64),
            1 => (16, u64::from_be_bytes(data.get(8..16)?.try_into().ok()?)),
            n => (8, n),
        };
        let end = usize::try_from(size).ok().filter(|&e| e >= header && e <= data.len())?;
        let body = &data[header..end];
        data = &data[end..];
        Some((kind, body))
    })
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    children(data).find(|(k, _)| k == kind).map(|(_, body)| body)
}

fn be_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fn be_u64(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

/// The timescale of an `mvhd` or `mdhd` body (both start alike): after the version and flags,
/// two times of 4 bytes (version 0) or 8 (version 1).
fn timescale(body: &[u8]) -> Option<u32> {
    be_u32(body, if *body.first()? == 1 { 20 } else { 12 }).filter(|&s| s > 0)
}

fn media_duration(mdhd: &[u8]) -> Option<u64> {
    if *mdhd.first()? == 1 {
        be_u64(mdhd, 24)
    } else {
        be_u32(mdhd, 16).map(u64::from)
    }
}

/// (segment duration, media time) of an `elst` holding one edit that plays media at normal
/// rate; an empty edit (media time -1, a delay) or several edits give `None`.
fn single_edit(elst: &[u8]) -> Option<(u64, u64)> {
    let version = *elst.first()?;
    if be_u32(elst, 4)? != 1 {
        return None;
    }
    let (segment, media_time, rate) = if version == 1 {
        (be_u64(elst, 8)?, be_u64(elst, 16)? as i64, be_u32(elst, 24)?)
    } else {
        (u64::from(be_u32(elst, 8)?), i64::from(be_u32(elst, 12)? as i32), be_u32(elst, 16)?)
    };
    // media_rate 1.0 is 0x0001_0000 (16.16 fixed point).
    (media_time >= 0 && rate == 0x0001_0000).then_some((segment, media_time as u64))
}
