//! Blocking files, for code in `torito::task::spawn_blocking`: the async calls, waited
//! on by parking the calling blocking task. Anywhere else they return
//! [`ErrorKind::WouldBlockCore`] instead of stalling the core.

use super::{DirEntry, Error, ErrorKind, Metadata, OpenOptions, SeekFrom};
use alloc::string::ToString;
use alloc::vec::Vec;

fn park<T>(
    path: &str,
    future: impl core::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    crate::task::block_on(future).map_err(|_| Error::new(path, ErrorKind::WouldBlockCore))?
}

/// A blocking open file; see [`super::File`].
#[derive(Debug)]
pub struct File(super::File);

impl File {
    /// See [`super::File::open`].
    ///
    /// # Errors
    /// As there, and [`ErrorKind::WouldBlockCore`] outside a blocking task.
    pub fn open(path: &str) -> Result<File, Error> {
        park(path, super::File::open(path)).map(File)
    }

    /// See [`super::File::create`].
    ///
    /// # Errors
    /// As there, and [`ErrorKind::WouldBlockCore`].
    pub fn create(path: &str) -> Result<File, Error> {
        park(path, super::File::create(path)).map(File)
    }

    /// See [`super::OpenOptions::open`].
    ///
    /// # Errors
    /// As there, and [`ErrorKind::WouldBlockCore`].
    pub fn open_with(options: &OpenOptions, path: &str) -> Result<File, Error> {
        park(path, options.open(path)).map(File)
    }

    /// See [`super::File::read`].
    ///
    /// # Errors
    /// As there, and [`ErrorKind::WouldBlockCore`].
    pub fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Error> {
        let path = self.0.path().to_string();
        park(&path, self.0.read(buffer))
    }

    /// See [`super::File::read_at`].
    ///
    /// # Errors
    /// As there, and [`ErrorKind::WouldBlockCore`].
    pub fn read_at(&self, offset: u64, buffer: &mut [u8]) -> Result<usize, Error> {
        park(self.0.path(), self.0.read_at(offset, buffer))
    }

    /// See [`super::File::write_all`].
    ///
    /// # Errors
    /// As there, and [`ErrorKind::WouldBlockCore`].
    pub fn write_all(&mut self, data: &[u8]) -> Result<(), Error> {
        let path = self.0.path().to_string();
        park(&path, self.0.write_all(data))
    }

    /// See [`super::File::write_at`].
    ///
    /// # Errors
    /// As there, and [`ErrorKind::WouldBlockCore`].
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), Error> {
        park(self.0.path(), self.0.write_at(offset, data))
    }

    /// See [`super::File::seek`].
    ///
    /// # Errors
    /// As there, and [`ErrorKind::WouldBlockCore`].
    pub fn seek(&mut self, to: SeekFrom) -> Result<u64, Error> {
        let path = self.0.path().to_string();
        park(&path, self.0.seek(to))
    }

    /// See [`super::File::metadata`].
    ///
    /// # Errors
    /// As there, and [`ErrorKind::WouldBlockCore`].
    pub fn metadata(&self) -> Result<Metadata, Error> {
        park(self.0.path(), self.0.metadata())
    }

    /// See [`super::File::sync`].
    ///
    /// # Errors
    /// As there, and [`ErrorKind::WouldBlockCore`].
    pub fn sync(&self) -> Result<(), Error> {
        park(self.0.path(), self.0.sync())
    }

    /// See [`super::File::close`].
    ///
    /// # Errors
    /// As there, and [`ErrorKind::WouldBlockCore`].
    pub fn close(self) -> Result<(), Error> {
        let path = self.0.path().to_string();
        park(&path, self.0.close())
    }
}

/// See [`super::metadata`].
///
/// # Errors
/// As there, and [`ErrorKind::WouldBlockCore`].
pub fn metadata(path: &str) -> Result<Metadata, Error> {
    park(path, super::metadata(path))
}

/// See [`super::read`].
///
/// # Errors
/// As there, and [`ErrorKind::WouldBlockCore`].
pub fn read(path: &str) -> Result<Vec<u8>, Error> {
    park(path, super::read(path))
}

/// See [`super::write`].
///
/// # Errors
/// As there, and [`ErrorKind::WouldBlockCore`].
pub fn write(path: &str, data: &[u8]) -> Result<(), Error> {
    park(path, super::write(path, data))
}

/// Every entry of the directory at `path`; see [`super::read_dir`].
///
/// # Errors
/// As there, and [`ErrorKind::WouldBlockCore`].
pub fn read_dir(path: &str) -> Result<Vec<DirEntry>, Error> {
    park(path, async { super::read_dir(path).await?.collect().await })
}

/// See [`super::create_dir`].
///
/// # Errors
/// As there, and [`ErrorKind::WouldBlockCore`].
pub fn create_dir(path: &str) -> Result<(), Error> {
    park(path, super::create_dir(path))
}

/// See [`super::remove_dir`].
///
/// # Errors
/// As there, and [`ErrorKind::WouldBlockCore`].
pub fn remove_dir(path: &str) -> Result<(), Error> {
    park(path, super::remove_dir(path))
}

/// See [`super::remove_file`].
///
/// # Errors
/// As there, and [`ErrorKind::WouldBlockCore`].
pub fn remove_file(path: &str) -> Result<(), Error> {
    park(path, super::remove_file(path))
}

/// See [`super::rename`].
///
/// # Errors
/// As there, and [`ErrorKind::WouldBlockCore`].
pub fn rename(from: &str, to: &str) -> Result<(), Error> {
    park(from, super::rename(from, to))
}
