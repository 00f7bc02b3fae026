//! Bounds on Automerge bytes that arrive from outside, checked before Automerge touches them.
//!
//! Automerge trusts its input's arithmetic: a 693-byte compressed change chunk inflates to a
//! gigabyte before any check; a run-length column can announce four billion operations in ten
//! bytes, which `Change::from_bytes` then counts one by one and `apply_changes` allocates; a
//! sync message's Bloom filter with zero bits divides by zero, and one with four billion probes
//! allocates sixteen gigabytes per hash it is asked about. So every change and catch-up message
//! from a phone passes through here first: a scan of the raw bytes, linear in their length and
//! allocating nothing sized by what they claim, that refuses anything whose decoding would cost
//! more than its size justifies.

use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::sync::Message;
use automerge::{AutoCommit, Change};

/// The most operations one change may hold. A phone's largest honest change is a description
/// replaced in one go (one operation per character) or a new case with its description.
pub const MAX_OPS_PER_CHANGE: u64 = 100_000;
/// The most predecessor references one change may hold (each costs an allocation).
pub const MAX_PREDS_PER_CHANGE: u64 = 200_000;
/// The most dependencies, actors or columns a change may list.
pub const MAX_LISTED: u64 = 1_024;
/// The most hashes a catch-up message may carry in its heads, needs and haves together.
pub const MAX_CATCH_UP_HASHES: usize = 4_096;
/// The most "have" entries in a catch-up message (a phone sends one).
pub const MAX_HAVES: usize = 8;
/// Bloom filter parameters an honest peer uses are 10 bits per entry and 7 probes; these bound
/// what a forged one may ask of the server.
pub const MAX_BLOOM_PROBES: u32 = 32;
pub const MAX_BLOOM_BITS_PER_ENTRY: u32 = 64;

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const CHUNK_CHANGE: u8 = 1;
/// Column specs (id << 4 | deflate << 3 | type) of the two columns that decide the cost of
/// decoding: the action column has one row per operation, the predecessor group column says
/// how many predecessors each operation lists.
const ACTION_COLUMN: u32 = (4 << 4) | 2;
const PRED_GROUP_COLUMN: u32 = 7 << 4;
const DEFLATE_BIT: u32 = 1 << 3;

/// Why untrusted Automerge bytes were refused before decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("not an Automerge change chunk")]
    NotAChange,
    #[error(
        "compressed change chunks are not accepted; send raw changes (the frame is compressed)"
    )]
    Compressed,
    #[error("the change is truncated or its lengths are inconsistent")]
    Truncated,
    #[error("the change holds more than {max} operations")]
    TooManyOps { max: u64 },
    #[error("the change lists more than {max} predecessors")]
    TooManyPreds { max: u64 },
    #[error("the change lists more than {MAX_LISTED} dependencies, actors or columns")]
    TooManyListed,
    #[error("the change does not decode: {0}")]
    Undecodable(String),
    #[error("the catch-up message does not decode: {0}")]
    BadCatchUp(String),
    #[error(
        "the catch-up message carries more than {MAX_CATCH_UP_HASHES} hashes or {MAX_HAVES} haves"
    )]
    CatchUpTooLarge,
    #[error("the catch-up message's Bloom filter is malformed")]
    BadBloom,
    #[error("a catch-up message may not carry changes; push them instead")]
    ChangesInCatchUp,
    #[error("the changes do not apply: {0}")]
    Unappliable(String),
}

/// What the scan learned about a change: enough to bound the cost of decoding and applying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeShape {
    pub ops: u64,
    pub preds: u64,
}

/// A cursor over untrusted bytes; every read is bounds-checked.
struct Bytes<'a> {
    rest: &'a [u8],
}

impl<'a> Bytes<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8], LimitError> {
        let n = usize::try_from(n).map_err(|_| LimitError::Truncated)?;
        if n > self.rest.len() {
            return Err(LimitError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn uleb(&mut self) -> Result<u64, LimitError> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = *self.take(1)?.first().ok_or(LimitError::Truncated)?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(LimitError::Truncated);
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(LimitError::Truncated)
    }

    fn sleb(&mut self) -> Result<i64, LimitError> {
        let mut value: i64 = 0;
        let mut shift = 0u32;
        loop {
            let byte = *self.take(1)?.first().ok_or(LimitError::Truncated)?;
            if shift >= 64 {
                return Err(LimitError::Truncated);
            }
            value |= i64::from(byte & 0x7f).wrapping_shl(shift);
            shift += 7;
            if byte & 0x80 == 0 {
                if shift < 64 && byte & 0x40 != 0 {
                    value |= -1i64 << shift;
                }
                return Ok(value);
            }
        }
    }

    /// A count of items that follow; refused above [`MAX_LISTED`].
    fn listed(&mut self) -> Result<u64, LimitError> {
        let n = self.uleb()?;
        if n > MAX_LISTED {
            return Err(LimitError::TooManyListed);
        }
        Ok(n)
    }

    fn length_prefixed(&mut self) -> Result<&'a [u8], LimitError> {
        let n = self.uleb()?;
        self.take(n)
    }
}

/// Walks a run-length encoded integer column, calling `row` once per run with (rows in the run,
/// the run's value or `None` for nulls and literal runs, whose values come one by one). Stops
/// with an error as soon as `row` does: the walk never does more work than the bytes allow.
fn walk_rle(
    column: &[u8],
    mut run: impl FnMut(u64, Option<u64>) -> Result<(), LimitError>,
) -> Result<(), LimitError> {
    let mut bytes = Bytes { rest: column };
    while !bytes.rest.is_empty() {
        let count = bytes.sleb()?;
        if count > 0 {
            let value = bytes.uleb()?;
            run(count as u64, Some(value))?;
        } else if count < 0 {
            let literals = count.unsigned_abs();
            if literals > column.len() as u64 {
                return Err(LimitError::Truncated);
            }
            for _ in 0..literals {
                let value = bytes.uleb()?;
                run(1, Some(value))?;
            }
        } else {
            let nulls = bytes.uleb()?;
            run(nulls, None)?;
        }
    }
    Ok(())
}

/// Scans a change chunk's header and its action and predecessor columns, without decoding
/// operations: linear in the length of `bytes`, whatever they claim.
pub fn scan_change(bytes: &[u8]) -> Result<ChangeShape, LimitError> {
    let mut b = Bytes { rest: bytes };
    if b.take(4)? != MAGIC {
        return Err(LimitError::NotAChange);
    }
    b.take(4)?; // checksum, verified by Automerge
    match b.take(1)?[0] {
        CHUNK_CHANGE => {}
        2 => return Err(LimitError::Compressed),
        _ => return Err(LimitError::NotAChange),
    }
    let len = b.uleb()?;
    let mut chunk = Bytes { rest: b.take(len)? };
    let deps = chunk.listed()?;
    chunk.take(deps.checked_mul(32).ok_or(LimitError::Truncated)?)?;
    chunk.length_prefixed()?; // actor
    chunk.uleb()?; // seq
    chunk.uleb()?; // start op
    chunk.sleb()?; // time
    chunk.length_prefixed()?; // message
    for _ in 0..chunk.listed()? {
        chunk.length_prefixed()?; // other actors
    }
    let columns = chunk.listed()?;
    let mut specs = Vec::with_capacity(columns as usize);
    for _ in 0..columns {
        let spec = u32::try_from(chunk.uleb()?).map_err(|_| LimitError::Truncated)?;
        if spec & DEFLATE_BIT != 0 {
            return Err(LimitError::Compressed);
        }
        specs.push((spec, chunk.uleb()?));
    }
    let mut shape = ChangeShape { ops: 0, preds: 0 };
    for (spec, len) in specs {
        let data = chunk.take(len)?;
        match spec {
            ACTION_COLUMN => walk_rle(data, |rows, _| {
                shape.ops = shape.ops.saturating_add(rows);
                if shape.ops > MAX_OPS_PER_CHANGE {
                    return Err(LimitError::TooManyOps {
                        max: MAX_OPS_PER_CHANGE,
                    });
                }
                Ok(())
            })?,
            PRED_GROUP_COLUMN => walk_rle(data, |rows, value| {
                let preds = rows.saturating_mul(value.unwrap_or(0));
                shape.preds = shape.preds.saturating_add(preds);
                if shape.preds > MAX_PREDS_PER_CHANGE {
                    return Err(LimitError::TooManyPreds {
                        max: MAX_PREDS_PER_CHANGE,
                    });
                }
                Ok(())
            })?,
            _ => {}
        }
    }
    Ok(shape)
}

/// Decodes a change from a phone once [`scan_change`] has bounded its cost.
pub fn decode_change(bytes: &[u8]) -> Result<Change, LimitError> {
    scan_change(bytes)?;
    Change::from_bytes(bytes.to_vec()).map_err(|e| LimitError::Undecodable(e.to_string()))
}

/// Applies changes from outside to `doc`, all or nothing. Automerge 0.12 panics on some crafted
/// changes that decode cleanly (an actor it cannot look up while importing operations, found by
/// fuzzing: `core/fuzz/regressions/change/`), so the changes are applied to a copy under
/// `catch_unwind`; a panic refuses them like any other error and `doc` stays as it was.
pub fn apply_untrusted(doc: &mut AutoCommit, changes: Vec<Change>) -> Result<(), LimitError> {
    let mut copy = doc.clone();
    let outcome = catch_unwind(AssertUnwindSafe(move || {
        copy.apply_changes(changes).map(|()| copy)
    }));
    match outcome {
        Ok(Ok(applied)) => {
            *doc = applied;
            Ok(())
        }
        Ok(Err(e)) => Err(LimitError::Unappliable(e.to_string())),
        Err(_) => Err(LimitError::Unappliable(
            "Automerge could not apply them".into(),
        )),
    }
}

/// Decodes a catch-up (Automerge sync) message from a phone and checks what answering it would
/// cost: bounded hash lists, sane Bloom filters, and no changes (changes reach the server only
/// through validated pushes).
pub fn decode_catch_up(bytes: &[u8]) -> Result<Message, LimitError> {
    let message = Message::decode(bytes).map_err(|e| LimitError::BadCatchUp(e.to_string()))?;
    let hashes = message.heads.len()
        + message.need.len()
        + message
            .have
            .iter()
            .map(|h| h.last_sync.len())
            .sum::<usize>();
    if hashes > MAX_CATCH_UP_HASHES || message.have.len() > MAX_HAVES {
        return Err(LimitError::CatchUpTooLarge);
    }
    if !message.changes.is_empty() {
        return Err(LimitError::ChangesInCatchUp);
    }
    for have in &message.have {
        check_bloom(&have.bloom.to_bytes())?;
    }
    Ok(message)
}

/// A Bloom filter's encoding: empty, or (entries, bits per entry, probes, bits). Automerge
/// divides by the number of bits and allocates one slot per probe for every hash it tests.
fn check_bloom(encoded: &[u8]) -> Result<(), LimitError> {
    if encoded.is_empty() {
        return Ok(());
    }
    let mut b = Bytes { rest: encoded };
    let read = |b: &mut Bytes<'_>| b.uleb().map_err(|_| LimitError::BadBloom);
    let entries = read(&mut b)?;
    let bits_per_entry = read(&mut b)?;
    let probes = read(&mut b)?;
    let sane = entries > 0
        && (1..=u64::from(MAX_BLOOM_BITS_PER_ENTRY)).contains(&bits_per_entry)
        && (1..=u64::from(MAX_BLOOM_PROBES)).contains(&probes)
        && !b.rest.is_empty();
    if sane {
        Ok(())
    } else {
        Err(LimitError::BadBloom)
    }
}

#[cfg(test)]
mod tests;
