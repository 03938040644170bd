//! The runner's async `run()` on a real torito executor: a TCP echo completes with no
//! poll loop in the test, so every wake (device, socket, timer) must reach its task.

mod common;

use common::*;
use torito_executor::Clock;
use torito_netstack::{Instant, TcpListener, TcpStream};

#[test]
fn echo_with_runners_as_executor_tasks() {
    let Sim {
        executor,
        clock,
        a,
        b,
    } = Sim::from_net(Net::new(Faults::none()));

    let listener = TcpListener::bind(&b, 7, 1).unwrap();
    let server = executor.spawn(async move {
        let mut stream = listener.accept().await.unwrap();
        let mut buffer = [0u8; 64];
        loop {
            let n = stream.read(&mut buffer).await.unwrap();
            if n == 0 {
                break;
            }
            stream.write_all(&buffer[..n]).await.unwrap();
        }
        stream.close().await.unwrap();
    });
    let echoed = executor.block_on(async {
        let mut stream = TcpStream::connect(&a, addr(IP_B, 7)).await.unwrap();
        let mut echoed = Vec::new();
        for word in [&b"hello "[..], b"torito ", b"echo"] {
            stream.write_all(word).await.unwrap();
            let mut buffer = [0u8; 64];
            let mut got = 0;
            while got < word.len() {
                got += stream.read(&mut buffer[got..]).await.unwrap();
            }
            echoed.extend_from_slice(&buffer[..got]);
        }
        stream.shutdown();
        let mut buffer = [0u8; 8];
        assert_eq!(stream.read(&mut buffer).await.unwrap(), 0);
        server.await;
        echoed
    });
    assert_eq!(echoed, b"hello torito echo");
    // A lost wake would have been rescued only by a retransmission (1 s minimum).
    let elapsed = clock.now();
    assert!(
        elapsed < Instant::from_millis(500),
        "took {elapsed:?} of simulated time"
    );
}
