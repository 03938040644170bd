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
        client.write_all(&[1u8; 1000]).await.unwrap();
        stage.set(2);
        client.close().await.unwrap();
        stage.set(3);
    };
    let receive = async {
        let _s = listener.accept().await.unwrap();
        eprintln!("accepted");
        std::future::pending::<()>().await
    };
    let mut f = std::pin::pin!(join(send, receive));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for i in 0..20000 {
        let _ = f.as_mut().poll(&mut cx);
        net.step();
        if i % 1000 == 0 {
            eprintln!(
                "step {i} t={:?} stage={} a={:?} b={:?} wire_dropped={} inflight={}",
                net.now,
                stage.get(),
                net.a.counters(),
                net.b.counters().frames_in,
                net.wire.lock().unwrap().dropped,
                net.wire.lock().unwrap().in_flight()
            );
        }
    }
}
