//! Paths and the mount table: which filesystem a path is on, and the path within it.
//!
//! Plain code, tested on the host. A path is split at `/`; empty components (`a//b`,
//! a trailing `/`) and `.` are dropped; `..` goes up one component and stops at the root
//! (as Linux's `/..` is `/`), so no path reaches above a mount's root or into another
//! mount by way of `..`. Components are UTF-8 (any script) up to 255 bytes, without NUL.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// The longest component (Linux's NAME_MAX, which FUSE and ext4 share).
pub const NAME_MAX: usize = 255;
/// The longest path taken.
pub const PATH_MAX: usize = 4096;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// A component longer than [`NAME_MAX`] bytes.
    NameTooLong {
        /// Its length in bytes.
        length: usize,
    },
    /// A path longer than [`PATH_MAX`] bytes.
    PathTooLong {
        /// Its length in bytes.
        length: usize,
    },
    /// A NUL byte in the path.
    Nul,
    /// No filesystem is mounted at or above the path.
    NoMount,
}

/// `path`'s components after `.`, `..` and empty ones are resolved.
///
/// # Errors
/// [`PathError`] for a path that is too long, has a component that is, or has a NUL.
pub fn components(path: &str) -> Result<Vec<&str>, PathError> {
    check(path)?;
    let mut out = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            name => out.push(name),
        }
    }
    Ok(out)
}

/// Whether [`components`] would take `path`, without allocating (the boot checks the
/// command line's mount points before there is a heap).
///
/// # Errors
/// As [`components`].
pub fn check(path: &str) -> Result<(), PathError> {
    if path.len() > PATH_MAX {
        return Err(PathError::PathTooLong { length: path.len() });
    }
    if path.contains('\0') {
        return Err(PathError::Nul);
    }
    match path.split('/').find(|name| name.len() > NAME_MAX) {
        Some(name) => Err(PathError::NameTooLong { length: name.len() }),
        None => Ok(()),
    }
}

/// `path` in canonical form: `/` and the components joined by `/`.
///
/// # Errors
/// As [`components`].
pub fn normalize(path: &str) -> Result<String, PathError> {
    let parts = components(path)?;
    if parts.is_empty() {
        return Ok("/".into());
    }
    let mut out = String::new();
    for part in parts {
        out.push('/');
        out.push_str(part);
    }
    Ok(out)
}

/// Why a mount was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountError {
    /// Something is mounted there already.
    Taken {
        /// The mount point.
        point: String,
    },
    /// The mount point is not a valid path.
    BadPoint {
        /// The mount point as given.
        point: String,
        /// Why.
        why: PathError,
    },
}

/// Filesystems by mount point; a path goes to the one mounted at its longest prefix.
#[derive(Debug, Clone)]
pub struct Mounts<T> {
    /// Mount point components and the filesystem.
    mounts: Vec<(Vec<String>, T)>,
}

impl<T> Default for Mounts<T> {
    fn default() -> Self {
        Self { mounts: Vec::new() }
    }
}

impl<T> Mounts<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Mounts `filesystem` at `point`.
    ///
    /// # Errors
    /// [`MountError::Taken`] when something is mounted at the same point;
    /// [`MountError::BadPoint`] for a point that is no valid path.
    pub fn mount(&mut self, point: &str, filesystem: T) -> Result<(), MountError> {
        let parts: Vec<String> = components(point)
            .map_err(|why| MountError::BadPoint {
                point: point.into(),
                why,
            })?
            .into_iter()
            .map(ToString::to_string)
            .collect();
        if self.mounts.iter().any(|(existing, _)| *existing == parts) {
            return Err(MountError::Taken {
                point: normalize(point).unwrap_or_else(|_| point.into()),
            });
        }
        self.mounts.push((parts, filesystem));
        Ok(())
    }

    /// The filesystem `path` is on and the components of the path within it.
    ///
    /// # Errors
    /// As [`components`], and [`PathError::NoMount`] when nothing is mounted at or above
    /// the path.
    pub fn resolve<'p>(&self, path: &'p str) -> Result<(&T, Vec<&'p str>), PathError> {
        let parts = components(path)?;
        let (point, filesystem) = self
            .mounts
            .iter()
            .filter(|(point, _)| {
                point.len() <= parts.len()
                    && point.iter().zip(&parts).all(|(a, b)| a.as_str() == *b)
            })
            .max_by_key(|(point, _)| point.len())
            .ok_or(PathError::NoMount)?;
        Ok((filesystem, parts[point.len()..].to_vec()))
    }

    /// The mount points, as paths, with their filesystems.
    pub fn iter(&self) -> impl Iterator<Item = (String, &T)> {
        self.mounts.iter().map(|(point, filesystem)| {
            let mut path = String::new();
            for part in point {
                path.push('/');
                path.push_str(part);
            }
            if path.is_empty() {
                path.push('/');
            }
            (path, filesystem)
        })
    }
}

/// One `fs.share=TAG:/point` or `fs.disk=INDEX:/point` value, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec<'a> {
    /// A virtio-fs share by tag.
    Share {
        /// The device's tag.
        tag: &'a str,
        /// Where it appears.
        point: &'a str,
    },
    /// A disk by index.
    Disk {
        /// The disk's index (`torito::block`).
        index: usize,
        /// Where it appears.
        point: &'a str,
    },
}

/// Why an `fs.` key's value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError<'a> {
    /// The key.
    pub key: &'a str,
    /// The value.
    pub value: &'a str,
    /// What is wrong.
    pub why: &'static str,
}

impl core::fmt::Display for SpecError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.key == CACHE_KEY {
            return write!(
                f,
                "`{}={}`: {}; write fs.cache=SIZE, the bytes each disk's cache may hold, \
                 as a number with an optional K, M or G (e.g. fs.cache=32M; 0 for none)",
                self.key, self.value, self.why
            );
        }
        write!(
            f,
            "`{}={}`: {}; write fs.share=TAG:/PATH (the share's tag, e.g. fs.share=share:/srv) \
             or fs.disk=INDEX:/PATH (e.g. fs.disk=0:/data)",
            self.key, self.value, self.why
        )
    }
}

/// The command-line keys read here.
pub const KEYS: &[&str] = &["fs.share", "fs.disk", CACHE_KEY];

/// The key that sizes each disk's cache (`fs.cache=SIZE`).
pub const CACHE_KEY: &str = "fs.cache";

/// Parses an `fs.cache=` value: bytes, with an optional binary suffix `K`, `M` or `G`
/// (upper or lower case).
///
/// # Errors
/// A [`SpecError`] for an empty value, a value that is no number, an unknown suffix, or
/// a size past 2^64 bytes.
pub fn parse_cache_size(value: &str) -> Result<u64, SpecError<'_>> {
    let error = |why| SpecError {
        key: CACHE_KEY,
        value,
        why,
    };
    let (digits, shift) = match value.as_bytes().last() {
        None => return Err(error("the size is empty")),
        Some(b'k' | b'K') => (&value[..value.len() - 1], 10),
        Some(b'm' | b'M') => (&value[..value.len() - 1], 20),
        Some(b'g' | b'G') => (&value[..value.len() - 1], 30),
        Some(_) => (value, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(error(
            "the size is not a number (with an optional K, M or G)",
        ));
    }
    let number: u64 = digits.parse().map_err(|_| error("the size is too large"))?;
    number
        .checked_mul(1 << shift)
        .ok_or(error("the size is too large"))
}

/// Parses one mount key's value (`key` is `fs.share` or `fs.disk`).
///
/// # Errors
/// A [`SpecError`] for a missing `:`, an empty tag, a disk index that is no number, a
/// mount point that is not absolute or not a valid path.
pub fn parse_spec<'a>(key: &'a str, value: &'a str) -> Result<MountSpec<'a>, SpecError<'a>> {
    let error = |why| SpecError { key, value, why };
    let (source, point) = value
        .split_once(':')
        .ok_or(error("no `:` between the source and the mount point"))?;
    if !point.starts_with('/') {
        return Err(error("the mount point must be an absolute path"));
    }
    check(point).map_err(|_| error("the mount point is not a valid path"))?;
    match key {
        "fs.share" if source.is_empty() => Err(error("the tag is empty")),
        "fs.share" if source.len() > 36 => Err(error("a virtio-fs tag has at most 36 bytes")),
        "fs.share" => Ok(MountSpec::Share { tag: source, point }),
        "fs.disk" => {
            let index = source
                .parse()
                .map_err(|_| error("the disk index is not a number"))?;
            Ok(MountSpec::Disk { index, point })
        }
        _ => Err(error("not a mount key")),
    }
}

/// Checks every mount key of `cmdline` (at boot, so a bad value stops the boot).
///
/// # Errors
/// The first value [`parse_spec`] refuses.
pub fn check_cmdline<'a>(cmdline: &torito_boot::Cmdline<'a>) -> Result<(), SpecError<'a>> {
    for arg in cmdline.args().filter(|arg| KEYS.contains(&arg.key)) {
        match arg.key {
            CACHE_KEY => parse_cache_size(arg.value.unwrap_or("")).map(drop)?,
            key => parse_spec(key, arg.value.unwrap_or("")).map(drop)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_and_empty_components_are_resolved_and_never_climb_above_the_root() {
        assert_eq!(components("/a//b/./c/").unwrap(), ["a", "b", "c"]);
        assert_eq!(components("a/b/../c").unwrap(), ["a", "c"]);
        assert_eq!(components("/../../etc/passwd").unwrap(), ["etc", "passwd"]);
        assert_eq!(components("/a/../..").unwrap(), Vec::<&str>::new());
        assert_eq!(components("").unwrap(), Vec::<&str>::new());
        assert_eq!(normalize("//x/./y/..//").unwrap(), "/x");
        assert_eq!(normalize("/..").unwrap(), "/");
        assert_eq!(components("/a/.../b").unwrap(), ["a", "...", "b"]);
    }

    #[test]
    fn long_and_non_ascii_names() {
        let longest = "é".repeat(127) + "x"; // 255 bytes
        assert_eq!(
            components(&format!("/{longest}")).unwrap(),
            [longest.as_str()]
        );
        let too_long = "é".repeat(128); // 256 bytes
        assert_eq!(
            components(&format!("/d/{too_long}")),
            Err(PathError::NameTooLong { length: 256 })
        );
        assert_eq!(
            components("/日本語/ファイル.txt").unwrap(),
            ["日本語", "ファイル.txt"]
        );
        assert_eq!(components("/a\0b"), Err(PathError::Nul));
        let deep = "/a".repeat(2049);
        assert!(matches!(
            components(&deep),
            Err(PathError::PathTooLong { .. })
        ));
    }

    #[test]
    fn a_path_goes_to_its_longest_mount_point() {
        let mut mounts = Mounts::new();
        mounts.mount("/", "root").unwrap();
        mounts.mount("/srv", "share").unwrap();
        mounts.mount("/srv/data/", "disk").unwrap();
        assert_eq!(mounts.resolve("/srv/x").unwrap(), (&"share", vec!["x"]));
        assert_eq!(mounts.resolve("/srv/data").unwrap(), (&"disk", vec![]));
        assert_eq!(
            mounts.resolve("/srv/data/a/b").unwrap(),
            (&"disk", vec!["a", "b"])
        );
        assert_eq!(mounts.resolve("/srvx").unwrap(), (&"root", vec!["srvx"]));
        // `..` cannot leave a mount by climbing: it is resolved before the lookup.
        assert_eq!(
            mounts.resolve("/srv/data/../../etc").unwrap(),
            (&"root", vec!["etc"])
        );
        assert_eq!(
            mounts.mount("/srv//", "again"),
            Err(MountError::Taken {
                point: "/srv".into()
            })
        );
        let points: Vec<_> = mounts.iter().map(|(point, _)| point).collect();
        assert_eq!(points, ["/", "/srv", "/srv/data"]);
    }

    #[test]
    fn a_path_outside_every_mount_is_refused() {
        let mut mounts = Mounts::new();
        mounts.mount("/srv", 1).unwrap();
        assert_eq!(mounts.resolve("/etc"), Err(PathError::NoMount));
        assert_eq!(mounts.resolve("/srv/../etc"), Err(PathError::NoMount));
        assert!(Mounts::<u8>::new().resolve("/").is_err());
    }

    #[test]
    fn cache_sizes_parse_and_hostile_ones_say_why() {
        assert_eq!(parse_cache_size("0"), Ok(0));
        assert_eq!(parse_cache_size("4096"), Ok(4096));
        assert_eq!(parse_cache_size("64k"), Ok(64 << 10));
        assert_eq!(parse_cache_size("32M"), Ok(32 << 20));
        assert_eq!(parse_cache_size("2G"), Ok(2 << 30));
        assert_eq!(parse_cache_size("17179869183G"), Ok(17179869183 << 30));
        for (value, why) in [
            ("", "empty"),
            ("M", "not a number"),
            ("-1", "not a number"),
            ("+1", "not a number"),
            ("1.5M", "not a number"),
            ("12T", "not a number"),
            ("1 M", "not a number"),
            ("18446744073709551616", "too large"),
            ("17179869184G", "too large"),
            ("99999999999999999999999G", "too large"),
        ] {
            let error = parse_cache_size(value).unwrap_err();
            assert!(error.why.contains(why), "{value}: {}", error.why);
            assert!(error.to_string().contains("fs.cache=32M"), "{error}");
        }
        let line = torito_boot::Cmdline::parse("fs.disk=0:/srv fs.cache=8M").unwrap();
        assert_eq!(check_cmdline(&line), Ok(()));
        let line = torito_boot::Cmdline::parse("fs.disk=0:/srv fs.cache=lots").unwrap();
        assert_eq!(check_cmdline(&line).unwrap_err().key, "fs.cache");
    }

    #[test]
    fn mount_keys_parse_and_bad_values_say_why() {
        assert_eq!(
            parse_spec("fs.share", "share:/srv"),
            Ok(MountSpec::Share {
                tag: "share",
                point: "/srv"
            })
        );
        assert_eq!(
            parse_spec("fs.disk", "1:/data"),
            Ok(MountSpec::Disk {
                index: 1,
                point: "/data"
            })
        );
        for (key, value, why) in [
            ("fs.share", "share", "no `:`"),
            ("fs.share", ":/srv", "tag is empty"),
            ("fs.share", "share:srv", "absolute"),
            ("fs.disk", "x:/data", "not a number"),
            ("fs.disk", "0:/", ""),
        ] {
            match parse_spec(key, value) {
                Err(error) => {
                    assert!(error.to_string().contains(why), "{error}");
                    assert!(error.to_string().contains("fs.share=TAG:/PATH"));
                }
                Ok(spec) if why.is_empty() => {
                    assert_eq!(
                        spec,
                        MountSpec::Disk {
                            index: 0,
                            point: "/"
                        }
                    )
                }
                Ok(spec) => panic!("{key}={value} accepted as {spec:?}"),
            }
        }
    }
}
