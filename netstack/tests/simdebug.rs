mod common;
use common::*;
use torito_netstack::{Duration, TcpListener, TcpStream};
#[test]
fn dbg42() {
    let faults = Faults {
        loss_percent: 10,
        max_delay: Duration::from_millis(20),
        rng: XorShift(42),
    };
    let mut net = Net::new(faults);
    let mut listener = TcpListener::bind(&net.b, 9000, 1).unwrap();
    let a = net.a.clone();
    let stage = std::cell::Cell::new(0);
    let send = async {
        let mut client = TcpStream::connect(&a, addr(IP_B, 9000)).await.unwrap();
        stage.set(1);
        client.write_all(&vec![1u8; 256 * 1024]).await.unwrap();
        stage.set(2);
        client.close().await.unwrap();
        stage.set(3);
    };
    let receive = async {
        let mut s = listener.accept().await.unwrap();
        let mut b = [0u8; 2048];
        let mut t = 0;
        loop {
            let n = s.read(&mut b).await.unwrap();
            if n == 0 {
                eprintln!("EOF at {t}");
                break;
            }
            t += n;
            if t == 256 * 1024 {
                eprintln!("all received");
            }
        }
        std::future::pending::<()>().await
    };
    let mut f = std::pin::pin!(join(send, receive));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for i in 0..100000 {
        let _ = f.as_mut().poll(&mut cx);
        if i % 1000 == 0 {
            let da = net.runner_a.poll(net.now);
            let db = net.runner_b.poll(net.now);
            let w = net.wire.lock().unwrap();
            eprintln!("A {} B {}", net.a.debug_tcp(), net.b.debug_tcp());
            eprintln!(
                "i={i} now={:?}ms da={:?} db={:?} wire={:?} inflight={} ain={} aout={} bin={}",
                net.now.as_nanos() / 1000000,
                da.map(|d| d.as_nanos() / 1000000),
                db.map(|d| d.as_nanos() / 1000000),
                w.next_delivery().map(|d| d.as_nanos() / 1000000),
                w.in_flight(),
                net.a.counters().frames_in,
                net.a.counters().frames_out,
                net.b.counters().frames_in
            );
        }
        net.step();
        if i % 20000 == 0 {
            eprintln!(
                "step {i} t={:?} stage={} a={:?} b={:?} wire_dropped={} inflight={}",
                net.now,
                stage.get(),
                net.a.counters(),
                net.b.counters().frames_in,
                net.wire.lock().unwrap().dropped,
                0
            );
        }
    }
}
