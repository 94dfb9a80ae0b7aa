//! `kvbox cdi-uploadserver`: CDI's upload server as an upload pod runs it (`cdi-upload-<claim>`): it takes one
//! upload on `:8443` — `POST /v1beta1/upload` (and `-async`, `-form`, `-form-async`, `upload-archive`; the same under
//! `v1alpha1`) from the upload proxy — streams it into the claim at `/data` as the importer streams a download
//! (raw, gzip and xz straight into a sparse `disk.img`, qcow2 through scratch and `qemu-img`), answers, and exits
//! 0 so the DataVolume turns Succeeded. A second request while one runs gets 503, one after success 409; a failed
//! upload may be retried. `HEAD` on the async paths answers 200 (virtctl's probe). The form variants read the
//! multipart part named `file`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::{FromRequest as _, Multipart, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt as _;

use super::importer::{self, ImportError, Job, Settings};
use super::source::BodyReader;

/// The upload server's command line (the pod runtime's `--mount-root`).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The directory standing for the container's filesystem.
    #[arg(long)]
    mount_root: PathBuf,
    /// Where uploads are taken.
    #[arg(long, default_value = "0.0.0.0:8443")]
    address: String,
    /// Log verbosity, as upstream's takes it.
    #[arg(short = 'v', default_value_t = 1)]
    verbosity: u8,
}

struct Server {
    settings: Settings,
    root: PathBuf,
    busy: tokio::sync::Mutex<()>,
    done: AtomicBool,
    finished: tokio::sync::Notify,
}

/// Serves until one upload succeeded; the exit status and termination message say how it went.
pub(crate) async fn run(args: Args) -> std::process::ExitCode {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => return fail(&args.mount_root, &e.to_string()),
    };
    let listener = match tokio::net::TcpListener::bind(&args.address).await {
        Ok(l) => l,
        Err(e) => return fail(&args.mount_root, &format!("listening on {}: {e}", args.address)),
    };
    let server = Arc::new(Server {
        settings,
        root: args.mount_root.clone(),
        busy: tokio::sync::Mutex::new(()),
        done: AtomicBool::new(false),
        finished: tokio::sync::Notify::new(),
    });
    let mut app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "OK" }));
    for version in ["v1beta1", "v1alpha1"] {
        for path in [
            "upload",
            "upload-async",
            "upload-form",
            "upload-form-async",
            "upload-archive",
        ] {
            let route = format!("/{version}/{path}");
            let handler = move |state: State<Arc<Server>>, req: Request| upload(state, path, req);
            app = if path.ends_with("-async") {
                app.route(
                    &route,
                    axum::routing::post(handler).head(|| async { StatusCode::OK }),
                )
            } else {
                app.route(&route, axum::routing::post(handler))
            };
        }
    }
    tracing::info!(address = %args.address, "upload server ready");
    let finished = server.clone();
    let served = axum::serve(listener, app.with_state(server.clone()))
        .with_graceful_shutdown(async move { finished.finished.notified().await })
        .await;
    if let Err(e) = served {
        return fail(&args.mount_root, &format!("serving: {e}"));
    }
    let term = serde_json::json!({"message": "Upload Complete"});
    write_termination(&args.mount_root, &term.to_string());
    std::process::ExitCode::SUCCESS
}

fn write_termination(root: &std::path::Path, text: &str) {
    let dev = root.join("dev");
    let _ = std::fs::create_dir_all(&dev);
    let _ = std::fs::write(dev.join("termination-log"), text);
}

fn fail(root: &std::path::Path, message: &str) -> std::process::ExitCode {
    eprintln!("{message}");
    write_termination(root, &serde_json::json!({"message": message}).to_string());
    std::process::ExitCode::FAILURE
}

async fn upload(State(server): State<Arc<Server>>, path: &'static str, req: Request) -> Response {
    if server.done.load(Ordering::SeqCst) {
        return (StatusCode::CONFLICT, "upload already completed\n").into_response();
    }
    let Ok(_guard) = server.busy.try_lock() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "an upload is already in progress\n",
        )
            .into_response();
    };
    let length = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let feeding = feed(path, req, tx);
    let mut settings = server.settings.clone();
    settings.archive |= path == "upload-archive";
    let result = match importer::claim_space(&settings, &server.root) {
        Ok((data, available, usable)) => {
            let job = Job {
                settings,
                length: if path.contains("form") { None } else { length },
                target: data.join("disk.img"),
                data,
                scratch: server.root.join("scratch"),
                available,
                progress: Arc::default(),
            };
            let archive = job.settings.archive;
            let target = job.target.clone();
            let work = tokio::task::spawn_blocking(move || job.run(BodyReader::new(rx)));
            let (fed, worked) = tokio::join!(feeding, work);
            let worked = worked
                .map_err(|e| ImportError::Convert(e.to_string()))
                .and_then(|r| r);
            match (fed, worked) {
                (Err(e), _) => Err(ImportError::Source(e)),
                (Ok(()), Ok(())) if !archive => importer::resize(&target, usable),
                (Ok(()), other) => other,
            }
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            server.done.store(true, Ordering::SeqCst);
            tracing::info!("upload complete");
            server.finished.notify_one();
            StatusCode::OK.into_response()
        }
        Err(e @ ImportError::TooBig { .. }) => (
            StatusCode::BAD_REQUEST,
            format!("Saving stream failed: effective image size is larger than the reported available storage: {e}\n"),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("Saving stream failed: {e}\n")).into_response(),
    }
}

/// Hands the request's data (the body, or a form's `file` part) to the writing thread.
async fn feed(
    path: &str,
    req: Request,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, String>>,
) -> Result<(), String> {
    if path.contains("form") {
        let mut form = Multipart::from_request(req, &())
            .await
            .map_err(|e| format!("reading the form: {e}"))?;
        while let Some(mut field) = form.next_field().await.map_err(|e| e.to_string())? {
            if field.name() != Some("file") {
                continue;
            }
            while let Some(chunk) = field.chunk().await.map_err(|e| e.to_string())? {
                if tx.send(Ok(chunk)).await.is_err() {
                    return Ok(());
                }
            }
            return Ok(());
        }
        let _ = tx.send(Err("the form has no part named \"file\"".into())).await;
        return Err("the form has no part named \"file\"".into());
    }
    let mut body = Body::into_data_stream(req.into_body());
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => {
                if tx.send(Ok(c)).await.is_err() {
                    return Ok(());
                }
            }
            Err(e) => {
                let _ = tx.send(Err(format!("reading the upload: {e}"))).await;
                return Err(format!("reading the upload: {e}"));
            }
        }
    }
    Ok(())
}
