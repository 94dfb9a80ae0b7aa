//! `kvbox images import|ls|rm|path`: the box-mode image store for containerDisk and kernelBoot images.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::images::Store;

/// Arguments of `kvbox images`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The server's data directory.
    #[arg(long, default_value = "/var/lib/kvbox", global = true)]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Import IMAGE (NAME[:TAG]; the tag defaults to latest) from a qcow2 or raw disk, or from a container image:
    /// an OCI image layout (directory), an OCI archive or a `docker save` archive (tar, may be gzip-compressed).
    /// A container image's disk is the file under its /disk/; its files serve kernelBoot.
    Import {
        /// The image reference VMIs use in `containerDisk.image` or `kernelBoot.container.image`.
        image: String,
        /// The disk file, image layout or archive.
        file: PathBuf,
    },
    /// List the stored images.
    Ls,
    /// Remove an image.
    Rm {
        /// The image reference.
        image: String,
    },
    /// Print the disk file of an image (for `virt-launcher --volume-source NAME=PATH`), or with --files the
    /// directory of its files (for `virt-launcher --kernel-boot-root`).
    Path {
        /// The image reference.
        image: String,
        /// The container image's files instead of its disk.
        #[arg(long)]
        files: bool,
    },
}

fn human(bytes: u64) -> String {
    let mib = bytes as f64 / f64::from(1u32 << 20);
    if mib >= 1024.0 {
        format!("{:.1}GiB", mib / 1024.0)
    } else {
        format!("{mib:.1}MiB")
    }
}

/// `qcow2`, `raw`, or for a container image `oci/qcow2`, `oci/raw`, `oci` (files only).
fn format_of(img: &crate::images::Image) -> String {
    match (img.rootfs, img.format.as_str()) {
        (false, f) => f.to_string(),
        (true, "none") => "oci".into(),
        (true, f) => format!("oci/{f}"),
    }
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let store = Store::new(&args.data_dir);
    match &args.command {
        Command::Import { image, file } => {
            let img = store.import(image, file)?;
            println!(
                "imported {} ({}, {})",
                img.reference,
                format_of(&img),
                human(img.size)
            );
        }
        Command::Ls => {
            println!("{:<60} {:<9} {:>10}  IMPORTED", "IMAGE", "FORMAT", "SIZE");
            for img in store.list()? {
                println!(
                    "{:<60} {:<9} {:>10}  {}",
                    img.reference,
                    format_of(&img),
                    human(img.size),
                    img.imported
                );
            }
        }
        Command::Rm { image } => {
            store.remove(image)?;
            println!("removed {}", crate::images::normalise(image)?);
        }
        Command::Path { image, files } => {
            let p = if *files {
                store.resolve_files(image)?
            } else {
                store.resolve(image)?
            };
            println!("{}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
