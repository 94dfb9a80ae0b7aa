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
    /// Import a qcow2 or raw disk as IMAGE (NAME[:TAG]; the tag defaults to latest).
    Import {
        /// The image reference VMIs use in `containerDisk.image`.
        image: String,
        /// The disk file.
        file: PathBuf,
    },
    /// List the stored images.
    Ls,
    /// Remove an image.
    Rm {
        /// The image reference.
        image: String,
    },
    /// Print the disk file of an image (for `virt-launcher --volume-source NAME=PATH`).
    Path {
        /// The image reference.
        image: String,
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

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let store = Store::new(&args.data_dir);
    match &args.command {
        Command::Import { image, file } => {
            let img = store.import(image, file)?;
            println!("imported {} ({}, {})", img.reference, img.format, human(img.size));
        }
        Command::Ls => {
            println!("{:<60} {:<6} {:>10}  IMPORTED", "IMAGE", "FORMAT", "SIZE");
            for img in store.list()? {
                println!(
                    "{:<60} {:<6} {:>10}  {}",
                    img.reference,
                    img.format,
                    human(img.size),
                    img.imported
                );
            }
        }
        Command::Rm { image } => {
            store.remove(image)?;
            println!("removed {}", crate::images::normalise(image)?);
        }
        Command::Path { image } => println!("{}", store.resolve(image)?.display()),
    }
    Ok(ExitCode::SUCCESS)
}
