//! `examples/files` over a virtio-fs share, checked from the host with curl: a directory
//! of seeded random files (0 bytes to 8 MiB, nested directories, a 255-byte name,
//! non-ASCII names) is shared with `qemu/run.sh --share`; every file fetched over HTTP
//! must equal the host's byte for byte, every directory listing must name the host's
//! entries, a Range request must return that slice, a missing file must be 404, a PUT
//! (sized or chunked) must appear on the host (and overwrite a longer file), and 20
//! clients at once must each get their files intact; the blocking API's self-test
//! (`app.selftest`: append, seek, rename, directories, removal, sync) must pass and leave
//! on the host exactly what it says. On q35 with 2 vCPUs (virtio-pci)
//! and microvm with 4 (virtio-mmio).
//!
//! The same files in an ext4 image made at test time (`mke2fs -d`), on a read-only
//! virtio-blk disk (microvm): every file, listings, ranges, 20 clients; a PUT is 403.
//!
//! Needs `build/files.elf` (`make images`), curl, mke2fs and /usr/lib/qemu/virtiofsd.
//! Timeouts only bound a hung guest; nothing asserts a timing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use torito_qemu_tests::{Failure, Guest, RunOptions, SplitMix64, TempDir};

const BOOT: Duration = Duration::from_secs(180);
const SERVING: &str = "files: serving on port 8080";

/// The share's files, relative paths, as written.
fn populate(root: &Path) -> Vec<String> {
    let mut random = SplitMix64(0x5eed_f11e);
    let long = format!("{}.bin", "l".repeat(251));
    let files: Vec<(String, usize)> = vec![
        ("empty".into(), 0),
        ("one.txt".into(), 1),
        ("page.html".into(), 4096),
        ("odd.bin".into(), 65_537),
        ("a/b/c/deep.dat".into(), 300_001),
        ("a/mega.bin".into(), (1 << 20) + 3),
        ("big.bin".into(), 8 << 20),
        ("ñandú/größe.txt".into(), 777),
        ("日本語/ファイル.dat".into(), 12_345),
        (long, 100),
        ("space name.txt".into(), 10),
    ];
    for (path, size) in &files {
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, random.bytes(*size)).unwrap();
    }
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    files.into_iter().map(|(path, _)| path).collect()
}

/// `path` percent-encoded for a URL (everything but unreserved characters and `/`).
fn encode(path: &str) -> String {
    path.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Runs curl with `args` against `http://127.0.0.1:PORT/PATH`; returns (status, body).
fn curl(port: u16, path: &str, args: &[&str]) -> Result<(u16, Vec<u8>), String> {
    let url = format!("http://127.0.0.1:{port}/{}", encode(path));
    let output = Command::new("curl")
        .args(["-s", "--max-time", "120", "-w", "\n%{http_code}"])
        .args(args)
        .arg(&url)
        .output()
        .map_err(|error| format!("curl: {error}"))?;
    let mut body = output.stdout;
    let split = body
        .iter()
        .rposition(|&byte| byte == b'\n')
        .ok_or(format!("curl {url}: no status (exit {:?})", output.status))?;
    let status = String::from_utf8_lossy(&body[split + 1..])
        .trim()
        .parse()
        .map_err(|_| format!("curl {url}: no status (exit {:?})", output.status))?;
    body.truncate(split);
    Ok((status, body))
}

fn get(port: u16, path: &str) -> Result<Vec<u8>, String> {
    match curl(port, path, &[])? {
        (200, body) => Ok(body),
        (status, body) => Err(format!(
            "GET /{path}: status {status}: {}",
            String::from_utf8_lossy(&body)
        )),
    }
}

/// What a directory listing should say: the host's entries, directories with `/`.
fn host_listing(directory: &Path) -> BTreeSet<String> {
    std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let mut name = entry.file_name().into_string().unwrap();
            if entry.file_type().unwrap().is_dir() {
                name.push('/');
            }
            name
        })
        .collect()
}

fn check_files(port: u16, root: &Path, files: &[String]) -> Result<(), String> {
    for path in files {
        let body = get(port, path)?;
        let host = std::fs::read(root.join(path)).unwrap();
        if body != host {
            return Err(format!(
                "/{path}: {} bytes over HTTP differ from the host's {}",
                body.len(),
                host.len()
            ));
        }
    }
    Ok(())
}

/// `extra_at_root`: entries the filesystem adds (an ext4 image's `lost+found/`).
fn check_listings(port: u16, root: &Path, extra_at_root: &[&str]) -> Result<(), String> {
    for directory in ["", "a", "a/b", "a/b/c", "ñandú", "日本語", "empty-dir"] {
        let body = get(port, directory)?;
        let listed: BTreeSet<String> = String::from_utf8(body)
            .map_err(|_| format!("/{directory}: listing is not UTF-8"))?
            .lines()
            .map(String::from)
            .collect();
        let mut host = host_listing(&root.join(directory));
        if directory.is_empty() {
            host.extend(extra_at_root.iter().map(|entry| entry.to_string()));
        }
        if listed != host {
            return Err(format!(
                "/{directory}: listed {listed:?}, host has {host:?}"
            ));
        }
    }
    Ok(())
}

fn check_statuses_and_ranges(port: u16, root: &Path) -> Result<(), String> {
    let (status, _) = curl(port, "no/such/file", &[])?;
    if status != 404 {
        return Err(format!("a missing file: status {status}, not 404"));
    }
    let host = std::fs::read(root.join("odd.bin")).unwrap();
    let (status, body) = curl(port, "odd.bin", &["-H", "Range: bytes=1000-65536"])?;
    if status != 206 || body != host[1000..] {
        return Err(format!(
            "Range 1000-65536: status {status}, {} bytes",
            body.len()
        ));
    }
    let (status, body) = curl(port, "odd.bin", &["-H", "Range: bytes=-10"])?;
    if status != 206 || body != host[host.len() - 10..] {
        return Err(format!("Range -10: status {status}, {} bytes", body.len()));
    }
    let (status, _) = curl(port, "odd.bin", &["-H", "Range: bytes=70000-"])?;
    if status != 416 {
        return Err(format!("Range past the end: status {status}, not 416"));
    }
    // `..` stays inside the served directory.
    let (status, _) = curl(port, "../../../etc/passwd", &["--path-as-is"])?;
    if status != 404 {
        return Err(format!("../etc/passwd: status {status}, not 404"));
    }
    Ok(())
}

fn check_put(port: u16, root: &Path, scratch: &Path) -> Result<(), String> {
    let mut random = SplitMix64(99);
    for (name, size, chunked) in [
        ("put/new.bin", 200_000, false),
        ("big.bin", 5000, false),
        ("put/é.txt", 0, false),
        ("put/chunked.bin", 300_001, true),
    ] {
        if name.starts_with("put/") {
            std::fs::create_dir_all(root.join("put")).unwrap();
        }
        let data = random.bytes(size);
        let upload = scratch.join("upload");
        std::fs::write(&upload, &data).unwrap();
        let mut args = vec!["-T", upload.to_str().unwrap()];
        if chunked {
            args.extend(["-H", "Transfer-Encoding: chunked"]);
        }
        let (status, body) = curl(port, name, &args)?;
        if status != 201 {
            return Err(format!(
                "PUT /{name}: status {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        let host = std::fs::read(root.join(name)).map_err(|error| format!("{name}: {error}"))?;
        if host != data {
            return Err(format!(
                "PUT /{name}: the host has {} bytes, sent {}",
                host.len(),
                data.len()
            ));
        }
        if get(port, name)? != data {
            return Err(format!("GET after PUT /{name} differs"));
        }
    }
    Ok(())
}

fn check_concurrent(port: u16, root: &Path, files: &[String]) -> Result<(), String> {
    let small: Vec<String> = files
        .iter()
        .filter(|path| std::fs::metadata(root.join(path)).unwrap().len() < (2 << 20))
        .cloned()
        .collect();
    let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|client| {
                let small = &small;
                scope.spawn(move || {
                    // Each client its own order, three rounds.
                    for round in 0..3 {
                        for index in 0..small.len() {
                            let path = &small[(index + client + round) % small.len()];
                            let body = get(port, path)?;
                            if body != std::fs::read(root.join(path)).unwrap() {
                                return Err(format!("client {client}: /{path} differs"));
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    let failed: Vec<_> = results.into_iter().filter_map(Result::err).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{} of 20 clients failed: {failed:?}", failed.len()))
    }
}

/// One check against the running guest.
type Step<'a> = dyn Fn() -> Result<(), String> + 'a;

/// Shares a fresh tree on `machine` with `cpus` vCPUs and runs every check.
fn share_case(machine: &str, cpus: u32) -> Result<(), Failure> {
    let share = TempDir::new(&format!("files-share-{machine}"));
    let scratch = TempDir::new(&format!("files-scratch-{machine}"));
    let files = populate(share.path());
    let options = RunOptions::default()
        .machine(machine)
        .smp(cpus)
        .mem("256M")
        .share(share.path())
        .append("fs.share=share:/srv app.selftest");
    let (guest, port) = Guest::start_forwarded("files", &options, 8080, SERVING, BOOT)?;
    // The blocking API's self-test ran before the server started.
    guest.wait_for_line("files: self-test passed", BOOT)?;
    let done = std::fs::read(share.join("selftest/done.txt")).unwrap_or_default();
    let left: BTreeSet<String> = host_listing(&share.join("selftest"));
    if done != b"ok" || left != BTreeSet::from(["done.txt".to_string()]) {
        return Err(guest.failure(format!(
            "after the self-test the share's selftest/ holds {left:?}, done.txt {done:?}"
        )));
    }
    std::fs::remove_dir_all(share.join("selftest")).unwrap();
    let steps: [(&str, &Step); 5] = [
        ("every file", &|| check_files(port, share.path(), &files)),
        ("listings", &|| check_listings(port, share.path(), &[])),
        ("statuses and ranges", &|| {
            check_statuses_and_ranges(port, share.path())
        }),
        ("put", &|| check_put(port, share.path(), scratch.path())),
        ("20 clients", &|| {
            check_concurrent(port, share.path(), &files)
        }),
    ];
    for (name, step) in steps {
        step().map_err(|error| guest.failure(format!("{name}: {error}")))?;
    }
    Ok(())
}

/// virtio-pci: virtio-drivers' transport, shown the device as a type it knows.
#[test]
fn a_virtio_fs_share_is_served_byte_for_byte_on_q35() -> Result<(), Failure> {
    share_case("q35", 2)
}

/// virtio-mmio (modern): Torito's register transport, four vCPUs.
#[test]
fn a_virtio_fs_share_is_served_byte_for_byte_on_microvm() -> Result<(), Failure> {
    share_case("microvm", 4)
}

/// A PUT to a read-only filesystem is refused with 403, and nothing changes.
fn check_put_refused(port: u16, scratch: &Path) -> Result<(), String> {
    let upload = scratch.join("upload");
    std::fs::write(&upload, b"not to be written").unwrap();
    for name in ["new.txt", "one.txt"] {
        let (status, _) = curl(port, name, &["-T", upload.to_str().unwrap()])?;
        if status != 403 {
            return Err(format!(
                "PUT /{name} on a read-only disk: status {status}, not 403"
            ));
        }
    }
    let (status, _) = curl(port, "new.txt", &[])?;
    if status != 404 {
        return Err(format!(
            "after a refused PUT, GET /new.txt: status {status}"
        ));
    }
    Ok(())
}

/// A 32 MiB ext4 image in SCRATCH holding SOURCE's tree, made with Debian's `mke2fs -d`.
fn ext4_image(source: &Path, scratch: &Path) -> PathBuf {
    let image = scratch.join("disk.img");
    let made = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(source)
        .arg(&image)
        .arg("32M")
        .output()
        .expect("mke2fs (e2fsprogs)");
    assert!(
        made.status.success(),
        "mke2fs: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    image
}

/// The same files in an ext4 image made with `mke2fs -d`, on a read-only virtio-blk disk
/// mounted with `fs.disk=0:/srv` (microvm: virtio-mmio).
#[test]
fn an_ext4_disk_is_served_byte_for_byte() -> Result<(), Failure> {
    let source = TempDir::new("files-ext4-source");
    let scratch = TempDir::new("files-ext4-scratch");
    let files = populate(source.path());
    let image = ext4_image(source.path(), scratch.path());
    let options = RunOptions::default()
        .smp(2)
        .mem("256M")
        .read_only_disk(image.to_str().unwrap())
        .append("fs.disk=0:/srv");
    let (guest, port) = Guest::start_forwarded("files", &options, 8080, SERVING, BOOT)?;
    let steps: [(&str, &Step); 5] = [
        ("every file", &|| check_files(port, source.path(), &files)),
        ("listings", &|| {
            check_listings(port, source.path(), &["lost+found/"])
        }),
        ("statuses and ranges", &|| {
            check_statuses_and_ranges(port, source.path())
        }),
        ("put refused", &|| check_put_refused(port, scratch.path())),
        ("20 clients", &|| {
            check_concurrent(port, source.path(), &files)
        }),
    ];
    for (name, step) in steps {
        step().map_err(|error| guest.failure(format!("{name}: {error}")))?;
    }
    Ok(())
}

/// The same image behind a disk cache of 256 KiB (`fs.cache=256K`: four 64 KiB chunks),
/// smaller than most of the files and than the read-ahead window, behind no cache at all
/// (`fs.cache=0`: every read goes to the disk uncached), and behind one asked larger than
/// the VM's memory (`fs.cache=1G` in 128 MiB: capped): every file is read twice and
/// by 20 clients at once, and must come back byte for byte each time while the small
/// cache evicts, reads ahead into the few slots it has and, with two servers (one per
/// core) missing at once, serves uncached when every slot is loading.
#[test]
fn an_ext4_disk_larger_than_its_cache_is_served_byte_for_byte_twice() -> Result<(), Failure> {
    let source = TempDir::new("files-ext4-small-cache-source");
    let scratch = TempDir::new("files-ext4-small-cache-scratch");
    let files = populate(source.path());
    let image = ext4_image(source.path(), scratch.path());
    for (size, described) in [
        ("256K", "256 KiB cache, 2 servers"),
        ("0", "0 KiB cache, 2 servers"),
        // More than the VM has: capped at half the heap, with a warning.
        ("1G", "fs.cache=1073741824 is more than half the heap"),
    ] {
        // Two cores: two filesystem servers share the small cache.
        let options = RunOptions::default()
            .smp(2)
            .mem("128M")
            .read_only_disk(image.to_str().unwrap())
            .append(&format!("fs.disk=0:/srv fs.cache={size}"));
        let (guest, port) = Guest::start_forwarded("files", &options, 8080, SERVING, BOOT)?;
        if !guest.console().contains(described) {
            return Err(guest.failure(format!(
                "the disk's cache is not the fs.cache={size} asked for"
            )));
        }
        let steps: [(&str, &Step); 3] = [
            ("every file", &|| check_files(port, source.path(), &files)),
            ("every file again", &|| {
                check_files(port, source.path(), &files)
            }),
            ("20 clients", &|| {
                check_concurrent(port, source.path(), &files)
            }),
        ];
        for (name, step) in steps {
            step().map_err(|error| guest.failure(format!("fs.cache={size}: {name}: {error}")))?;
        }
    }
    Ok(())
}

/// A cache size that is no size stops the boot, saying what to write.
#[test]
fn a_bad_cache_size_stops_the_boot_with_the_reason() -> Result<(), Failure> {
    let options = RunOptions::default().append("fs.disk=0:/srv fs.cache=lots");
    let mut guest = Guest::start("files", &options);
    let outcome = guest.wait_exit(BOOT)?;
    if outcome.code == Some(0) || outcome.line("fs.cache=32M").is_none() {
        return Err(guest.failure("a cache size that is no number was not refused at boot"));
    }
    Ok(())
}

#[test]
fn a_bad_mount_key_stops_the_boot_with_the_reason() -> Result<(), Failure> {
    let options = RunOptions::default().append("fs.share=share");
    let mut guest = Guest::start("files", &options);
    let outcome = guest.wait_exit(BOOT)?;
    if outcome.code == Some(0) || outcome.line("fs.share=TAG:/PATH").is_none() {
        return Err(guest.failure("a mount key without a mount point was not refused at boot"));
    }
    Ok(())
}
