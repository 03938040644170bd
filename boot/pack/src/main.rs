//! `torito-pack KERNEL IMAGE`: writes IMAGE, a self-unpacking copy of the linked KERNEL.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kernel, image] = args.as_slice() else {
        eprintln!(
            "usage: torito-pack KERNEL IMAGE   (KERNEL: target/x86_64-unknown-none/release/NAME)"
        );
        return ExitCode::from(2);
    };
    let input = match std::fs::read(kernel) {
        Ok(bytes) => bytes,
        Err(error) => {
            eprintln!("torito-pack: cannot read {kernel}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let packed = match torito_pack::pack(&input) {
        Ok(packed) => packed,
        Err(error) => {
            eprintln!("torito-pack: {kernel}: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = std::fs::write(image, &packed.image) {
        eprintln!("torito-pack: cannot write {image}: {error}");
        return ExitCode::FAILURE;
    }
    let descriptor = packed.descriptor;
    println!(
        "torito-pack: {image}: {} bytes (stub {}, {} bytes of kernel packed into {})",
        packed.image.len(),
        packed.stub_len,
        descriptor.dest_len,
        descriptor.source_len
    );
    ExitCode::SUCCESS
}
