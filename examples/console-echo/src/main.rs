//! Console echo: sends back whatever arrives on the virtio console port, as is, or in
//! upper case with `app.case=upper` on the command line. With `app.mode=blocking` it
//! echoes from a blocking task through `torito::console::blocking` instead of an async
//! one. The serial console only says when it is ready.
//!
//! Try it: `qemu/run.sh build/console-echo.elf --console-port /tmp/port`, then
//! `nc -U /tmp/port` (or `socat - UNIX-CONNECT:/tmp/port`) and type.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use torito::console::{self, PortError};

const READY: &str = "console-echo: ready on the virtio console port";

#[torito::main]
async fn main() -> Result<(), PortError> {
    let upper = torito::boot::arg("app.case") == Some("upper");
    if torito::boot::arg("app.mode") == Some("blocking") {
        return torito::task::spawn_blocking(move || echo_blocking(upper)).await;
    }
    let mut port = console::port()?;
    torito::println!("{}", READY);
    let mut buffer = [0u8; 4096];
    loop {
        let received = port.read(&mut buffer).await?;
        let bytes = &mut buffer[..received];
        if upper {
            bytes.make_ascii_uppercase();
        }
        port.write_all(bytes).await?;
    }
}

/// The same echo, each call parking this blocking task until it completes.
fn echo_blocking(upper: bool) -> Result<(), PortError> {
    let mut port = console::blocking::port()?;
    torito::println!("{} (blocking)", READY);
    let mut buffer = [0u8; 4096];
    loop {
        let received = port.read(&mut buffer)?;
        let bytes = &mut buffer[..received];
        if upper {
            bytes.make_ascii_uppercase();
        }
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let written = port.write(rest)?;
            rest = &rest[written..];
        }
    }
}
