//! Seeded simulation: a lossy, reordering, delaying wire; 256 KiB must arrive intact.

mod common;

use common::*;
use torito_netstack::{Duration, TcpListener, TcpStream};

const LEN: usize = 256 * 1024;

fn transfer(seed: u64) {
    let faults = Faults {
        loss_percent: 10,
        max_delay: Duration::from_millis(20),
        rng: XorShift(seed),
    };
    let mut net = Net::new(faults);
    let listener = TcpListener::bind(&net.b, 9000, 1).unwrap();
    let a = net.a.clone();
    let data: Vec<u8> = {
        let mut rng = XorShift(seed ^ 0x9e37_79b9_7f4a_7c15);
        (0..LEN).map(|_| rng.next() as u8).collect()
    };
    let send = async {
        let mut client = TcpStream::connect(&a, addr(IP_B, 9000)).await.unwrap();
        client.write_all(&data).await.unwrap();
        client.close().await.unwrap();
    };
    let receive = async {
        let mut server = listener.accept().await.unwrap();
        let mut received = Vec::with_capacity(LEN);
        let mut buffer = [0u8; 2048];
        loop {
            let n = server.read(&mut buffer).await.unwrap();
            if n == 0 {
                break received;
            }
            received.extend_from_slice(&buffer[..n]);
        }
    };
    // Bounded: fails instead of hanging.
    let ((), received) = net.run(400_000, join(send, receive));
    assert_eq!(received.len(), LEN, "seed {seed}");
    let first_difference = received.iter().zip(&data).position(|(a, b)| a != b);
    assert_eq!(
        first_difference, None,
        "seed {seed}: bytes corrupted or reordered"
    );
    let dropped = net.wire.lock().unwrap().dropped;
    assert!(
        dropped > 10,
        "seed {seed}: the wire dropped only {dropped} frames"
    );
}

#[test]
fn lossy_reordering_wire_delivers_every_byte_in_order() {
    for seed in [1, 0xdead_beef, 42, 7_777_777, 2024] {
        transfer(seed);
    }
}
