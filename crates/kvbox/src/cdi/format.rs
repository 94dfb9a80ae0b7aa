//! Image formats as the importer meets them in a stream: sniffing (gzip, xz, qcow2, else raw), decompression, the
//! sparse copy of raw data into `disk.img` (zero blocks become holes; never past the space the claim allows), and
//! `qemu-img` for what needs a seekable file (info, convert).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::importer::ImportError;

/// What the first bytes of a stream say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// gzip.
    Gzip,
    /// xz.
    Xz,
    /// qcow2 (QEMU's copy-on-write format).
    Qcow2,
    /// Anything else: taken as a raw disk.
    Raw,
}

/// The kind of stream starting with `head`.
pub(crate) fn sniff(head: &[u8]) -> Kind {
    if head.starts_with(&[0x1f, 0x8b]) {
        Kind::Gzip
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Kind::Xz
    } else if head.starts_with(b"QFI\xfb") {
        Kind::Qcow2
    } else {
        Kind::Raw
    }
}

/// The stream `peek` looked at: the bytes it read, then the rest.
pub(crate) type Peeked<R> = std::io::Chain<std::io::Cursor<Vec<u8>>, R>;

/// Reads the first bytes of `r` to tell its kind; the returned reader still yields them.
pub(crate) fn peek<R: Read>(mut r: R) -> std::io::Result<(Kind, Peeked<R>)> {
    let mut head = vec![0u8; 8];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(n);
    Ok((sniff(&head), std::io::Cursor::new(head).chain(r)))
}

/// Undoes gzip or xz (`kind`), leaving other streams as they are.
pub(crate) fn decompress<'a>(kind: Kind, r: impl Read + Send + 'a) -> Box<dyn Read + Send + 'a> {
    match kind {
        Kind::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Kind::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(r)),
        Kind::Qcow2 | Kind::Raw => Box::new(r),
    }
}

/// Copies `r` into `out` from offset 0, leaving holes for all-zero blocks; refuses to write past `limit` bytes (the
/// error then names the size reached, a lower bound of the image's).
/// `done` counts the bytes copied. Returns the stream's length.
pub(crate) fn sparse_copy(
    r: &mut dyn Read,
    out: &mut std::fs::File,
    limit: u64,
    done: &Arc<AtomicU64>,
) -> Result<u64, ImportError> {
    const BLOCK: usize = 64 << 10;
    static ZEROS: [u8; BLOCK] = [0; BLOCK];
    let mut buf = vec![0u8; 1 << 20];
    let mut pos: u64 = 0;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match r.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ImportError::Source(format!("reading the image: {e}"))),
            }
        }
        if filled == 0 {
            break;
        }
        let end = pos + filled as u64;
        if end > limit {
            return Err(ImportError::TooBig {
                size: end,
                available: limit,
            });
        }
        for chunk in buf[..filled].chunks(BLOCK) {
            // A slice comparison is a memcmp: fast even in a debug build.
            if chunk == &ZEROS[..chunk.len()] {
                out.seek(SeekFrom::Current(chunk.len() as i64))
                    .map_err(ImportError::target)?;
            } else {
                out.write_all(chunk).map_err(ImportError::target)?;
            }
        }
        pos = end;
        done.store(pos, Ordering::Relaxed);
    }
    // Trailing holes: the length says where the disk ends.
    out.set_len(pos).map_err(ImportError::target)?;
    Ok(pos)
}

/// What `qemu-img info` says of an image.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Info {
    /// Its format.
    pub(crate) format: String,
    /// The size the guest sees.
    #[serde(rename = "virtual-size")]
    pub(crate) virtual_size: u64,
    /// A backing file, which an imported image may not have.
    #[serde(rename = "backing-filename", default)]
    pub(crate) backing: Option<String>,
}

/// `qemu-img info` of `image` (a path or a `json:` filename).
pub(crate) fn info(image: &str) -> Result<Info, ImportError> {
    let out = std::process::Command::new("qemu-img")
        .args(["info", "--output", "json", image])
        .output()
        .map_err(|e| ImportError::Convert(format!("running qemu-img: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(ImportError::Validate(format!("qemu-img info: {}", err.trim())));
    }
    let info: Info = serde_json::from_slice(&out.stdout)
        .map_err(|e| ImportError::Validate(format!("qemu-img info: {e}")))?;
    if let Some(b) = &info.backing {
        return Err(ImportError::Validate(format!(
            "image has a backing file {b:?}, which is not allowed"
        )));
    }
    Ok(info)
}

/// How long `qemu-img convert` may go without progress or new data in the target before it is taken as hung
/// (QEMU's curl driver can lose a connection's callback and wait for ever).
const STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// `qemu-img convert -O raw` of `image` into `target`, with its `-p` progress (0–100, hundredths) into `percent`.
/// A conversion that stalls for [`STALL`] is killed ([`ImportError::Stalled`]).
pub(crate) fn convert(image: &str, target: &Path, percent: &Arc<AtomicU64>) -> Result<(), ImportError> {
    let mut child = std::process::Command::new("qemu-img")
        .args(["convert", "-p", "-t", "writeback", "-O", "raw", image])
        .arg(target)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| ImportError::Convert(format!("running qemu-img: {e}")))?;
    // Progress lines look like "    (45.12/100%)\r"; a reader thread follows them.
    let reader = child.stdout.take().map(|mut out| {
        let percent = percent.clone();
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let mut buf = [0u8; 256];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                text.extend_from_slice(&buf[..n]);
                let s = String::from_utf8_lossy(&text);
                if let Some(p) = s.rsplit('(').find_map(|t| {
                    t.split_once("/100%")
                        .and_then(|(v, _)| v.trim().parse::<f64>().ok())
                }) {
                    percent.store((p * 100.0) as u64, Ordering::Relaxed);
                }
                if text.len() > 4096 {
                    text.drain(..text.len() - 64);
                }
            }
        })
    });
    let allocated = || std::fs::metadata(target).map_or(0, |m| std::os::unix::fs::MetadataExt::blocks(&m));
    let mut seen = (percent.load(Ordering::Relaxed), allocated());
    let mut moved = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {}
            Err(e) => return Err(ImportError::Convert(format!("qemu-img: {e}"))),
        }
        let now = (percent.load(Ordering::Relaxed), allocated());
        if now != seen {
            seen = now;
            moved = std::time::Instant::now();
        } else if moved.elapsed() > STALL {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ImportError::Stalled(STALL.as_secs()));
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    if let Some(r) = reader {
        let _ = r.join();
    }
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        return Err(ImportError::Convert(format!("qemu-img convert: {}", err.trim())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn formats_are_told_by_their_magic() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Kind::Gzip);
        assert_eq!(sniff(b"\xfd7zXZ\x00\x00"), Kind::Xz);
        assert_eq!(sniff(b"QFI\xfb\x00\x00\x00\x03"), Kind::Qcow2);
        assert_eq!(sniff(b"\xeb\x63\x90"), Kind::Raw);
        assert_eq!(sniff(b""), Kind::Raw);
    }

    #[test]
    fn a_sparse_copy_leaves_holes_and_stops_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let mut data = vec![0u8; 4 << 20];
        data[0] = 1;
        data[(3 << 20) + 5] = 2;
        let mut out = std::fs::File::create(&path).unwrap();
        let done = Arc::new(AtomicU64::new(0));
        let n = sparse_copy(&mut data.as_slice(), &mut out, 8 << 20, &done).unwrap();
        assert_eq!(n, 4 << 20);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        let meta = std::fs::metadata(&path).unwrap();
        assert!(
            std::os::unix::fs::MetadataExt::blocks(&meta) * 512 < 1 << 20,
            "not sparse"
        );
        let mut out = std::fs::File::create(&path).unwrap();
        let err = sparse_copy(&mut data.as_slice(), &mut out, 2 << 20, &done).unwrap_err();
        assert!(matches!(err, ImportError::TooBig { .. }), "{err}");
    }

    #[test]
    fn compressed_streams_are_recognised_and_undone() {
        let raw = b"hello disk".repeat(1000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        let gz = gz.finish().unwrap();
        let (kind, r) = peek(gz.as_slice()).unwrap();
        assert_eq!(kind, Kind::Gzip);
        let mut back = Vec::new();
        decompress(kind, r).read_to_end(&mut back).unwrap();
        assert_eq!(back, raw);
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&raw).unwrap();
        let xz = xz.finish().unwrap();
        let (kind, r) = peek(xz.as_slice()).unwrap();
        assert_eq!(kind, Kind::Xz);
        let mut back = Vec::new();
        decompress(kind, r).read_to_end(&mut back).unwrap();
        assert_eq!(back, raw);
    }
}
