//! `make oci`'s image layout (qemu/oci.py): what urunc and a registry read from it.
//!
//! The layout is written into a temporary directory from `build/echo.elf` and checked by
//! `qemu/oci.py check`, which walks it from `index.json` down (digests and sizes of every
//! blob, the config's `diff_ids` against the uncompressed layer, the kernel and
//! `/urunc.json` in the layer, urunc's annotations). This test also reads the files
//! itself for what a user relies on, and tampers with a blob to see the check fail.
//! skopeo (qemu/setup.sh installs it; it is also what pushes the image) must copy the
//! layout too: an independent reader that checks every digest.

use std::path::{Path, PathBuf};
use std::process::Command;

use torito_qemu_tests::{image_path, workspace_root};

fn oci(args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .arg(workspace_root().join("qemu/oci.py"))
        .args(args)
        .output()
        .expect("python3 runs (qemu/setup.sh installs it)")
}

/// A fresh directory under the target directory, removed first if a run left it.
fn scratch(name: &str) -> PathBuf {
    let directory = workspace_root()
        .join("target/oci-test")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    directory
}

fn build(out: &Path, extra: &[&str]) {
    let kernel = image_path("echo");
    let mut args = vec![
        "build",
        "--kernel",
        kernel.to_str().unwrap(),
        "--name",
        "echo",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = oci(&args);
    assert!(
        output.status.success(),
        "oci.py build failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn blobs(out: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(out.join("blobs/sha256"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn layout_holds_the_kernel_and_urunc_annotations() {
    let out = scratch("layout");
    build(&out, &[]);
    let check = oci(&["check", out.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Three blobs: manifest, config, layer; the manifest carries urunc's annotations
    // (plain) and the layer's urunc.json carries them base64-encoded.
    assert_eq!(blobs(&out).len(), 3);
    let index = std::fs::read_to_string(out.join("index.json")).unwrap();
    assert!(index.contains("\"org.opencontainers.image.ref.name\":\"latest\""));
    let manifest = blobs(&out)
        .into_iter()
        .map(|path| std::fs::read(path).unwrap())
        // The manifest lists `"layers":[..]`; the config names "layers" too, as its
        // rootfs type, so that word alone picks one or the other by digest order.
        .find(|blob| {
            blob.starts_with(b"{") && String::from_utf8_lossy(blob).contains("\"layers\":[")
        })
        .expect("a manifest blob");
    let manifest = String::from_utf8(manifest).unwrap();
    for needle in [
        "\"com.urunc.unikernel.unikernelType\":\"linux\"",
        "\"com.urunc.unikernel.hypervisor\":\"qemu\"",
        "\"com.urunc.unikernel.binary\":\"/unikernel/echo\"",
        "application/vnd.oci.image.layer.v1.tar+gzip",
    ] {
        assert!(
            manifest.contains(needle),
            "{needle} missing from {manifest}"
        );
    }
    // The same kernel gives the same layout, byte for byte (reproducible digests).
    let again = scratch("again");
    build(&again, &[]);
    let contents = |out: &Path| -> Vec<Vec<u8>> {
        blobs(out)
            .into_iter()
            .map(|path| std::fs::read(path).unwrap())
            .collect()
    };
    assert_eq!(contents(&out), contents(&again));
    // Another type and hypervisor are written as asked.
    let hermit = scratch("hermit");
    build(
        &hermit,
        &["--type", "hermit", "--hypervisor", "firecracker"],
    );
    let check = oci(&["check", hermit.to_str().unwrap()]);
    assert!(check.status.success());
    let all: String = contents(&hermit)
        .iter()
        .map(|blob| String::from_utf8_lossy(blob).into_owned())
        .collect();
    assert!(all.contains("\"com.urunc.unikernel.unikernelType\":\"hermit\""));
    assert!(all.contains("\"com.urunc.unikernel.hypervisor\":\"firecracker\""));

    // An independent reader, when there is one.
    if Command::new("skopeo").arg("--version").output().is_ok() {
        // `skopeo copy` reads every blob and checks its digest, as a push would.
        let reference = format!("oci:{}:latest", out.display());
        let copied = scratch("skopeo");
        let copy = Command::new("skopeo")
            .args(["copy", "--quiet", &reference])
            .arg(format!("dir:{}", copied.display()))
            .output()
            .unwrap();
        assert!(
            copy.status.success(),
            "skopeo cannot read the layout: {}",
            String::from_utf8_lossy(&copy.stderr)
        );
        let manifest = std::fs::read_to_string(copied.join("manifest.json")).unwrap();
        assert!(
            manifest.contains("com.urunc.unikernel.binary"),
            "{manifest}"
        );
        let _ = std::fs::remove_dir_all(copied);
    } else {
        eprintln!("oci: skopeo not installed: the layout is checked by qemu/oci.py only");
    }
    for directory in [out, again, hermit] {
        let _ = std::fs::remove_dir_all(directory);
    }
}

#[test]
fn a_tampered_layout_is_caught() {
    let out = scratch("tampered");
    build(&out, &[]);
    // Flip a byte of the largest blob (the layer): its digest no longer matches.
    let layer = blobs(&out)
        .into_iter()
        .max_by_key(|path| std::fs::metadata(path).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&layer).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&layer, &bytes).unwrap();
    let check = oci(&["check", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success(), "a corrupt layer passed");
    assert!(
        stderr.contains("layer") && stderr.contains("digest"),
        "{stderr}"
    );
    // A missing index is named as such.
    std::fs::remove_file(out.join("index.json")).unwrap();
    let check = oci(&["check", out.to_str().unwrap()]);
    assert!(!check.status.success());
    assert!(String::from_utf8_lossy(&check.stderr).contains("index.json"));
    let _ = std::fs::remove_dir_all(out);
}
