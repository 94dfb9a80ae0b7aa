//! `kvbox cdi-importer`: CDI's importer as an importer pod runs it. Settings come from upstream's environment
//! (`IMPORTER_SOURCE`, `IMPORTER_ENDPOINT`, `IMPORTER_CONTENTTYPE`, `IMPORTER_IMAGE_SIZE`, `FILESYSTEM_OVERHEAD`,
//! `OWNER_UID`, `IMPORTER_CERT_DIR`, `IMPORTER_EXTRA_HEADER_<n>`, `IMPORTER_ACCESS_KEY_ID`/`IMPORTER_SECRET_KEY`);
//! the claim is at `/data` and a clone source at `/source` under the container root.
//!
//! Beyond CDI (which always downloads whole to scratch first), data goes straight into `/data/disk.img` wherever
//! the format allows: raw, gzip- and xz-compressed raw stream through a sparse copy. A qcow2 (compressed or not)
//! needs random access: it is downloaded to a scratch file in the pod's own directory (never the claim) and
//! converted by `qemu-img`. (Reading it in place through QEMU's curl driver was tried: on this QEMU it loses a
//! connection now and then and waits for ever, and it was slower than the download for a local server.)
//! The image never grows past the claim: a stream longer than the space available, or a virtual size larger, fails
//! with upstream's message. Progress (0–100) is served as `kubevirt_cdi_import_progress_total{ownerUID}` on
//! `:8443/metrics`, as upstream's importer serves it; the result is the termination message.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::format::{self, Kind};
use super::source::{self, HttpSettings};

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImportError {
    /// A setting is missing or wrong.
    #[error("{0}")]
    Settings(String),
    /// The source could not be read.
    #[error("{0}")]
    Source(String),
    /// The image is not one we can import.
    #[error("{0}")]
    Validate(String),
    /// Conversion failed.
    #[error("{0}")]
    Convert(String),
    /// Writing the claim failed.
    #[error("writing the disk image: {0}")]
    Target(#[source] std::io::Error),
    /// The conversion made no progress for this many seconds and was stopped.
    #[error("the transfer made no progress for {0} s and was cancelled")]
    Stalled(u64),
    /// The image does not fit.
    #[error(
        "virtual image size {size} is larger than the reported available storage {available}. A larger PVC is required"
    )]
    TooBig {
        /// The image's (virtual) size.
        size: u64,
        /// The space the claim offers.
        available: u64,
    },
}

impl ImportError {
    pub(crate) fn target(e: std::io::Error) -> Self {
        Self::Target(e)
    }
}

/// The importer's command line (the pod runtime's `--mount-root`).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The directory standing for the container's filesystem.
    #[arg(long)]
    mount_root: PathBuf,
    /// Where the progress metrics are served.
    #[arg(long, default_value = "0.0.0.0:8443")]
    metrics_address: String,
    /// Log verbosity, as upstream's importer takes it (`-v=1`); `IMPORTER_LOG` sets the filter.
    #[arg(short = 'v', default_value_t = 1)]
    verbosity: u8,
}

/// What to import.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    /// `IMPORTER_SOURCE=http`.
    Http(String, HttpSettings),
    /// `none`: a blank disk.
    Blank,
    /// `pvc`: a copy of the claim at `/source`.
    Clone,
    /// `upload`: what the upload server receives.
    Upload,
}

/// The import's settings, from the environment.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) source: Source,
    pub(crate) archive: bool,
    image_size: u64,
    overhead: f64,
    owner_uid: String,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Settings {
    pub(crate) fn from_env() -> Result<Self, ImportError> {
        let bad = |what: String| ImportError::Settings(what);
        let source = match env("IMPORTER_SOURCE").as_deref().unwrap_or("none") {
            "http" => {
                let url =
                    env("IMPORTER_ENDPOINT").ok_or_else(|| bad("IMPORTER_ENDPOINT is not set".into()))?;
                let mut extra: Vec<(u32, String)> = std::env::vars()
                    .filter_map(|(k, v)| Some((k.strip_prefix("IMPORTER_EXTRA_HEADER_")?.parse().ok()?, v)))
                    .collect();
                extra.sort();
                let settings = HttpSettings {
                    basic_auth: env("IMPORTER_ACCESS_KEY_ID").zip(env("IMPORTER_SECRET_KEY")),
                    extra_headers: extra.into_iter().map(|(_, v)| v).collect(),
                    cert_dir: env("IMPORTER_CERT_DIR").map(PathBuf::from),
                };
                Source::Http(url, settings)
            }
            "none" | "blank" => Source::Blank,
            "pvc" => Source::Clone,
            "upload" => Source::Upload,
            other => return Err(bad(format!("IMPORTER_SOURCE {other:?} is not supported"))),
        };
        let size = env("IMPORTER_IMAGE_SIZE").ok_or_else(|| bad("IMPORTER_IMAGE_SIZE is not set".into()))?;
        let image_size = kubevirt_api::quantity::parse(&size)
            .ok()
            .and_then(|q| u64::try_from(q.value()).ok())
            .ok_or_else(|| bad(format!("IMPORTER_IMAGE_SIZE {size:?} is not a quantity")))?;
        let overhead = env("FILESYSTEM_OVERHEAD").map_or(Ok(0.0), |v| {
            v.parse::<f64>()
                .ok()
                .filter(|o| (0.0..=1.0).contains(o))
                .ok_or_else(|| bad(format!("FILESYSTEM_OVERHEAD {v:?} is not between 0 and 1")))
        })?;
        Ok(Self {
            source,
            archive: env("IMPORTER_CONTENTTYPE").as_deref() == Some("archive"),
            image_size,
            overhead,
            owner_uid: env("OWNER_UID").unwrap_or_default(),
        })
    }
}

impl Settings {
    /// Paths the pod gives as the container sees them (`/certs`) are under the container root here.
    fn rebase(&mut self, root: &Path) {
        if let Source::Http(_, http) = &mut self.source
            && let Some(dir) = &http.cert_dir
        {
            http.cert_dir = Some(root.join(dir.strip_prefix("/").unwrap_or(dir)));
        }
    }
}

const MIB: u64 = 1 << 20;

/// Progress in hundredths of a percent, only ever raised.
#[derive(Debug, Default)]
pub(crate) struct Progress(AtomicU64);

impl Progress {
    fn raise(&self, hundredths: u64) {
        self.0.fetch_max(hundredths.min(10_000), Ordering::Relaxed);
    }

    fn percent(&self) -> f64 {
        self.0.load(Ordering::Relaxed) as f64 / 100.0
    }
}

/// Runs the import; the process's exit status and termination message say how it went.
pub(crate) async fn run(args: Args) -> std::process::ExitCode {
    let progress = Arc::new(Progress::default());
    let outcome = match Settings::from_env() {
        Ok(mut settings) => {
            settings.rebase(&args.mount_root);
            serve_metrics(
                &args.metrics_address,
                settings.owner_uid.clone(),
                progress.clone(),
            )
            .await;
            import(&settings, &args.mount_root, &progress).await
        }
        Err(e) => Err(e),
    };
    let (message, code) = match &outcome {
        Ok(()) => ("Import Complete".to_string(), 0),
        Err(e) => (format!("Unable to process data: {e}"), 1),
    };
    tracing::info!(%message, "import ended");
    eprintln!("{message}");
    let term = serde_json::json!({"message": message, "preallocationApplied": false});
    let dev = args.mount_root.join("dev");
    let _ = std::fs::create_dir_all(&dev);
    let _ = std::fs::write(dev.join("termination-log"), term.to_string());
    std::process::ExitCode::from(code)
}

/// Serves `kubevirt_cdi_import_progress_total{ownerUID}` (0–100) in Prometheus' text format.
async fn serve_metrics(address: &str, owner: String, progress: Arc<Progress>) {
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(%address, error = %e, "serving progress");
            return;
        }
    };
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = format!(
                "# HELP kubevirt_cdi_import_progress_total The import progress in percentage\n\
                 # TYPE kubevirt_cdi_import_progress_total counter\n\
                 kubevirt_cdi_import_progress_total{{ownerUID=\"{owner}\"}} {:.2}\n",
                progress.percent()
            );
            async move { body }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

/// Free bytes of the file system holding `dir`.
fn free_space(dir: &Path) -> Result<u64, ImportError> {
    let st = rustix::fs::statvfs(dir).map_err(|e| ImportError::Target(e.into()))?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The claim at `/data` under `root`: the space it offers and the disk size it allows once the file system takes
/// its share.
pub(crate) fn claim_space(settings: &Settings, root: &Path) -> Result<(PathBuf, u64, u64), ImportError> {
    let data = root.join("data");
    if !data.is_dir() {
        return Err(ImportError::Settings("no claim is mounted at /data".into()));
    }
    let available = free_space(&data)?.min(settings.image_size);
    let usable = ((available as f64 / (1.0 + settings.overhead)) as u64) / MIB * MIB;
    Ok((data, available, usable))
}

async fn import(settings: &Settings, root: &Path, progress: &Arc<Progress>) -> Result<(), ImportError> {
    let (data, available, usable) = claim_space(settings, root)?;
    let target = data.join("disk.img");
    tracing::info!(available, usable, "importing");
    match &settings.source {
        Source::Upload => {
            return Err(ImportError::Settings(
                "an upload is received by the upload server".into(),
            ));
        }
        Source::Blank => {
            let f = std::fs::File::create(&target).map_err(ImportError::target)?;
            f.set_len(usable).map_err(ImportError::target)?;
        }
        Source::Clone => {
            let from = root.join("source").join("disk.img");
            let len = std::fs::metadata(&from)
                .map_err(|e| ImportError::Source(format!("the clone source has no disk.img: {e}")))?
                .len();
            let copied = Arc::new(AtomicU64::new(0));
            let ticker = tick(progress.clone(), copied.clone(), Some(len));
            let target2 = target.clone();
            let result = tokio::task::spawn_blocking(move || {
                let mut r = std::fs::File::open(&from).map_err(|e| ImportError::Source(e.to_string()))?;
                let mut out = std::fs::File::create(&target2).map_err(ImportError::target)?;
                format::sparse_copy(&mut r, &mut out, available, &copied)
            })
            .await
            .map_err(|e| ImportError::Convert(e.to_string()))?;
            ticker.abort();
            result?;
        }
        Source::Http(url, http) => {
            let received = Arc::new(AtomicU64::new(0));
            let opened = source::open(url, http, received.clone()).await?;
            tracing::info!(url = %opened.url, length = ?opened.length, "downloading");
            let ticker = tick(progress.clone(), received, opened.length);
            let job = Job {
                settings: settings.clone(),
                length: opened.length,
                target: target.clone(),
                data: data.clone(),
                scratch: root.join("scratch"),
                available,
                progress: progress.clone(),
            };
            let body = opened.body;
            let result = tokio::task::spawn_blocking(move || job.run(body))
                .await
                .map_err(|e| ImportError::Convert(e.to_string()))?;
            ticker.abort();
            result?;
        }
    }
    if !settings.archive {
        resize(&target, usable)?;
    }
    progress.raise(10_000);
    Ok(())
}

/// Grows a raw `disk.img` to the size the claim allows (never shrinks it).
pub(crate) fn resize(target: &Path, usable: u64) -> Result<(), ImportError> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(target)
        .map_err(ImportError::target)?;
    let len = f.metadata().map_err(ImportError::target)?.len();
    if len < usable {
        f.set_len(usable).map_err(ImportError::target)?;
    }
    Ok(())
}

/// Every second, progress from bytes received out of `length`.
fn tick(progress: Arc<Progress>, done: Arc<AtomicU64>, length: Option<u64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(length) = length.filter(|l| *l > 0) else {
            return;
        };
        loop {
            let d = done.load(Ordering::Relaxed);
            progress.raise(d.saturating_mul(10_000) / length);
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    })
}

/// The blocking half of an import from a stream (an http body, an upload).
pub(crate) struct Job {
    pub(crate) settings: Settings,
    /// The stream's length, when the sender said.
    pub(crate) length: Option<u64>,
    pub(crate) target: PathBuf,
    pub(crate) data: PathBuf,
    pub(crate) scratch: PathBuf,
    pub(crate) available: u64,
    pub(crate) progress: Arc<Progress>,
}

impl Job {
    /// Writes the stream `body` into the claim, converting as its format needs.
    pub(crate) fn run(self, body: impl std::io::Read + Send) -> Result<(), ImportError> {
        let (kind, stream) = format::peek(body).map_err(|e| ImportError::Source(e.to_string()))?;
        if self.settings.archive {
            let mut archive = tar::Archive::new(format::decompress(kind, stream));
            return archive
                .unpack(&self.data)
                .map_err(|e| ImportError::Validate(format!("unpacking the archive: {e}")));
        }
        let ignore = Arc::new(AtomicU64::new(0));
        match kind {
            Kind::Qcow2 => {
                let tmp = self.to_scratch(&mut Box::new(stream), &ignore)?;
                self.convert(&tmp.display().to_string())
            }
            Kind::Raw => {
                // A raw image's size is its length: too big is known before a byte is written.
                if let Some(size) = self.length.filter(|l| *l > self.available) {
                    return Err(ImportError::TooBig {
                        size,
                        available: self.available,
                    });
                }
                self.write_raw(&mut Box::new(stream), &ignore)
            }
            Kind::Gzip | Kind::Xz => {
                let (inner, stream) = format::peek(format::decompress(kind, stream))
                    .map_err(|e| ImportError::Source(e.to_string()))?;
                match inner {
                    Kind::Qcow2 => {
                        let tmp = self.to_scratch(&mut Box::new(stream), &ignore)?;
                        self.convert(&tmp.display().to_string())
                    }
                    Kind::Gzip | Kind::Xz => Err(ImportError::Validate(
                        "nested compression is not supported".into(),
                    )),
                    Kind::Raw => self.write_raw(&mut Box::new(stream), &ignore),
                }
            }
        }
    }

    fn write_raw(&self, r: &mut dyn std::io::Read, done: &Arc<AtomicU64>) -> Result<(), ImportError> {
        let mut out = std::fs::File::create(&self.target).map_err(ImportError::target)?;
        let written = format::sparse_copy(r, &mut out, self.available, done);
        if written.is_err() {
            let _ = std::fs::remove_file(&self.target);
        }
        written.map(|_| ())
    }

    /// The stream into `/scratch/tmpimage` (the pod's own directory: not counted against the claim).
    fn to_scratch(&self, r: &mut dyn std::io::Read, done: &Arc<AtomicU64>) -> Result<PathBuf, ImportError> {
        std::fs::create_dir_all(&self.scratch).map_err(ImportError::target)?;
        let tmp = self.scratch.join("tmpimage");
        let mut out = std::fs::File::create(&tmp).map_err(ImportError::target)?;
        format::sparse_copy(r, &mut out, u64::MAX, done)?;
        Ok(tmp)
    }

    fn convert(&self, image: &str) -> Result<(), ImportError> {
        let info = format::info(image)?;
        if info.virtual_size > self.available {
            return Err(ImportError::TooBig {
                size: info.virtual_size,
                available: self.available,
            });
        }
        tracing::info!(format = %info.format, virtual_size = info.virtual_size, "converting");
        let percent = Arc::new(AtomicU64::new(0));
        let watcher = {
            let (percent, progress) = (percent.clone(), self.progress.clone());
            std::thread::spawn(move || {
                while Arc::strong_count(&percent) > 1 {
                    progress.raise(percent.load(Ordering::Relaxed));
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
            })
        };
        let result = format::convert(image, &self.target, &percent);
        drop(percent);
        let _ = watcher.join();
        let _ = std::fs::remove_dir_all(&self.scratch);
        if result.is_err() {
            let _ = std::fs::remove_file(&self.target);
        }
        result
    }
}
