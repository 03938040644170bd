//! Console echo: sends back whatever arrives on the virtio console port, as is, or in
//! upper case with `app.case=upper` on the command line. The serial console only says when it
//! is ready.
//!
//! Try it: `qemu/run.sh build/console-echo.elf --console-port /tmp/port`, then
//! `nc -U /tmp/port` (or `socat - UNIX-CONNECT:/tmp/port`) and type.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use torito::console::{self, PortError};

#[torito::main]
async fn main() -> Result<(), PortError> {
    let mut port = console::port()?;
    let upper = torito::boot::arg("app.case") == Some("upper");
    torito::println!("console-echo: ready on the virtio console port");
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
