//! The partition log: an append-only file of stamped events, the local stand-in for the
//! retention Event Hubs gives every partition.
//!
//! An accepted event is written here before it can be archived, so a crash (even SIGKILL) loses
//! nothing the archiver has not committed: on restart the log is replayed from the last sequence
//! number committed to Bronze. Segments wholly archived are deleted.
//!
//! Record framing: `u32 payload length | u32 CRC-32 of payload | payload`, little-endian. A torn
//! record at the tail (a crash mid-write) fails its length or CRC check and is cut off.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};

use crate::{ReceivedEvent, Source};

const SEGMENT_SUFFIX: &str = ".log";
const NO_KEY: u32 = u32::MAX;

/// One partition's log: a directory of segments named by their first sequence number.
pub struct PartitionLog {
    dir: PathBuf,
    writer: BufWriter<File>,
    segment_first: i64,
    segment_bytes: u64,
    max_segment_bytes: u64,
}

/// What a log held when it was opened.
pub struct Recovered {
    /// Every intact record, in sequence order.
    pub events: Vec<ReceivedEvent>,
    /// Bytes cut off a torn tail.
    pub torn_bytes: u64,
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, returning it and every intact record.
    pub fn open(dir: &Path, max_segment_bytes: u64) -> io::Result<(PartitionLog, Recovered)> {
        fs::create_dir_all(dir)?;
        let segments = list_segments(dir)?;
        let mut events = Vec::new();
        let mut torn_bytes = 0;
        for (i, (_, path)) in segments.iter().enumerate() {
            let (mut read, good_len, file_len) = read_segment(path)?;
            if good_len < file_len {
                if i + 1 < segments.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} is corrupt before its end", path.display()),
                    ));
                }
                // A torn tail of the newest segment: cut it so appends continue cleanly.
                OpenOptions::new()
                    .write(true)
                    .open(path)?
                    .set_len(good_len)?;
                torn_bytes = file_len - good_len;
            }
            events.append(&mut read);
        }
        let next_seq = events.last().map_or(0, |e| e.sequence_number + 1);
        let (segment_first, path) = match segments.last() {
            Some((first, path)) => (*first, path.clone()),
            None => (next_seq, segment_path(dir, next_seq)),
        };
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let segment_bytes = file.metadata()?.len();
        let log = PartitionLog {
            dir: dir.to_path_buf(),
            writer: BufWriter::with_capacity(1 << 20, file),
            segment_first,
            segment_bytes,
            max_segment_bytes,
        };
        Ok((log, Recovered { events, torn_bytes }))
    }

    /// Appends one event; it reaches the OS at the next [`flush`](Self::flush).
    pub fn append(&mut self, event: &ReceivedEvent) -> io::Result<()> {
        if self.segment_bytes >= self.max_segment_bytes {
            self.roll(event.sequence_number)?;
        }
        // The payload goes to the buffer piece by piece, its CRC computed over the same pieces,
        // so an event is copied once (into the buffer), not twice.
        let pieces = Pieces::of(event);
        let mut crc = crc32fast::Hasher::new();
        let mut len = 0usize;
        for piece in pieces.iter() {
            crc.update(piece);
            len += piece.len();
        }
        self.writer.write_all(&(len as u32).to_le_bytes())?;
        self.writer.write_all(&crc.finalize().to_le_bytes())?;
        for piece in pieces.iter() {
            self.writer.write_all(piece)?;
        }
        self.segment_bytes += 8 + len as u64;
        Ok(())
    }

    /// Hands buffered records to the OS (they then survive a process crash); with `sync`, also
    /// to the disk (they survive a power loss).
    pub fn flush(&mut self, sync: bool) -> io::Result<()> {
        self.writer.flush()?;
        if sync {
            self.writer.get_ref().sync_data()?;
        }
        Ok(())
    }

    /// Deletes every closed segment holding only sequence numbers up to `through`.
    pub fn truncate_through(&mut self, through: i64) -> io::Result<()> {
        let segments = list_segments(&self.dir)?;
        for pair in segments.windows(2) {
            let (_, path) = &pair[0];
            let (next_first, _) = pair[1];
            // The open segment is always the last one, so it is never in pair[0].
            if next_first <= through + 1 {
                fs::remove_file(path)?;
            }
        }
        Ok(())
    }

    fn roll(&mut self, first: i64) -> io::Result<()> {
        self.flush(false)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(&self.dir, first))?;
        self.writer = BufWriter::with_capacity(1 << 20, file);
        self.segment_first = first;
        self.segment_bytes = 0;
        Ok(())
    }
}

fn segment_path(dir: &Path, first: i64) -> PathBuf {
    dir.join(format!("{first:020}{SEGMENT_SUFFIX}"))
}

fn list_segments(dir: &Path) -> io::Result<Vec<(i64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|n| n.parse::<i64>().ok());
        if let Some(first) = first {
            segments.push((first, path));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Reads a segment: its intact records, the length they span, and the file's length.
fn read_segment(path: &Path) -> io::Result<(Vec<ReceivedEvent>, u64, u64)> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut events = Vec::new();
    let mut at = 0usize;
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(event) = decode(payload) else {
            break;
        };
        events.push(event);
        at += 8 + len;
    }
    Ok((events, at as u64, bytes.len() as u64))
}

/// A record's payload as the slices it is made of:
/// `seq | offset | enqueued µs | source | key length | key | body length | body`.
struct Pieces<'a> {
    fixed: [u8; 25],
    key_len: [u8; 4],
    key: &'a [u8],
    body_len: [u8; 4],
    body: &'a [u8],
}

impl<'a> Pieces<'a> {
    fn of(e: &'a ReceivedEvent) -> Self {
        let mut fixed = [0u8; 25];
        fixed[0..8].copy_from_slice(&e.sequence_number.to_le_bytes());
        fixed[8..16].copy_from_slice(&e.offset.to_le_bytes());
        fixed[16..24].copy_from_slice(&e.enqueued_time.timestamp_micros().to_le_bytes());
        fixed[24] = e.source as u8;
        let key = e.partition_key.as_deref();
        Pieces {
            fixed,
            key_len: key.map_or(NO_KEY, |k| k.len() as u32).to_le_bytes(),
            key: key.map_or(&[][..], str::as_bytes),
            body_len: (e.body.len() as u32).to_le_bytes(),
            body: e.body.as_bytes(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        [
            &self.fixed[..],
            &self.key_len[..],
            self.key,
            &self.body_len[..],
            self.body,
        ]
        .into_iter()
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at + n)?;
        self.at += n;
        Some(slice)
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn string(&mut self, len: u32) -> Option<String> {
        String::from_utf8(self.take(len as usize)?.to_vec()).ok()
    }
}

fn decode(payload: &[u8]) -> Option<ReceivedEvent> {
    let mut c = Cursor {
        bytes: payload,
        at: 0,
    };
    let sequence_number = c.i64()?;
    let offset = c.i64()?;
    let enqueued_time = Utc.timestamp_micros(c.i64()?).single()?;
    let source = Source::from_u8(c.take(1)?[0])?;
    let key_len = c.u32()?;
    let partition_key = if key_len == NO_KEY {
        None
    } else {
        Some(c.string(key_len)?)
    };
    let body_len = c.u32()?;
    let body = c.string(body_len)?;
    Some(ReceivedEvent {
        sequence_number,
        offset,
        enqueued_time,
        partition_key,
        source,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64, body: &str) -> ReceivedEvent {
        ReceivedEvent {
            sequence_number: seq,
            offset: seq * 10,
            enqueued_time: Utc
                .timestamp_micros(1_700_000_000_000_000 + seq)
                .single()
                .expect("time"),
            partition_key: (seq % 2 == 0).then(|| format!("order_{seq}")),
            source: Source::Generator,
            body: body.to_string(),
        }
    }

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, rec) = PartitionLog::open(dir.path(), 1 << 20).expect("open");
        assert!(rec.events.is_empty());
        for i in 0..100 {
            log.append(&event(i, &format!("{{\"n\":{i}}}")))
                .expect("append");
        }
        log.flush(false).expect("flush");
        drop(log);
        let (_, rec) = PartitionLog::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(rec.events.len(), 100);
        assert_eq!(rec.events[42], event(42, "{\"n\":42}"));
    }

    #[test]
    fn torn_tail_is_cut_and_appends_continue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = PartitionLog::open(dir.path(), 1 << 20).expect("open");
        for i in 0..10 {
            log.append(&event(i, "body")).expect("append");
        }
        log.flush(false).expect("flush");
        drop(log);
        // Simulate a crash mid-record: half a header and some garbage at the end.
        let (_, path) = list_segments(dir.path()).expect("list").remove(0);
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open seg");
        f.write_all(&[9, 0, 0, 0, 1, 2]).expect("write garbage");
        drop(f);
        let (mut log, rec) = PartitionLog::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(rec.events.len(), 10);
        assert_eq!(rec.torn_bytes, 6);
        log.append(&event(10, "after")).expect("append");
        log.flush(false).expect("flush");
        drop(log);
        let (_, rec) = PartitionLog::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(rec.events.len(), 11);
        assert_eq!(rec.events[10].body, "after");
    }

    #[test]
    fn archived_segments_are_deleted_but_not_the_open_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = PartitionLog::open(dir.path(), 200).expect("open");
        for i in 0..50 {
            log.append(&event(i, "0123456789")).expect("append");
        }
        log.flush(false).expect("flush");
        let before = list_segments(dir.path()).expect("list").len();
        assert!(before > 3, "small segments roll: {before}");
        log.truncate_through(49).expect("truncate");
        let after = list_segments(dir.path()).expect("list");
        assert_eq!(after.len(), 1, "only the open segment stays");
        log.truncate_through(10).expect("no-op");
        drop(log);
        let (_, rec) = PartitionLog::open(dir.path(), 200).expect("reopen");
        assert!(rec.events.iter().all(|e| e.sequence_number >= after[0].0));
    }
}
