//! `ip=dhcp` on a network without a DHCP server: `Stack::configured` says so, with the
//! fix, after a few seconds and again at a slower pace, and gives up at the configured
//! limit (`dhcp.timeout=`), on simulated time.

mod common;

use std::sync::Mutex;

use common::*;
use torito_executor::Clock;
use torito_netstack::{
    Config, DHCP_FIRST_WARNING, DHCP_WARNING_EVERY, Duration, Error, Ipv4Config,
};

/// Every warning logged, with its message.
static WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record) {
        if record.level() == log::Level::Warn {
            WARNINGS.lock().unwrap().push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

#[test]
fn without_a_dhcp_server_the_stack_warns_with_the_fix_then_gives_up() {
    log::set_logger(&CAPTURE).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    let limit = Duration::from_secs(70);
    let dhcp = Config {
        ipv4: Ipv4Config::Dhcp,
        dhcp_timeout: Some(limit),
        ..Config::default()
    };
    // Side B has a static address and no DHCP server: nobody answers A.
    let net = Net::with_configs(Faults::none(), dhcp, static_config(IP_B));
    let sim = Sim::from_net(net);
    let start = sim.clock.now();
    let result = sim.executor.block_on(sim.a.configured());
    assert_eq!(result, Err(Error::NoDhcpAnswer { waited_secs: 70 }));
    assert!(sim.clock.now() - start >= limit);
    let text = result.unwrap_err().to_string();
    assert!(text.contains("ip=ADDRESS/PREFIX"), "{text}");

    let warnings = WARNINGS.lock().unwrap();
    // At 5 s, 35 s and 65 s: the first soon, then at the slower pace.
    let expected = 1 + ((limit - DHCP_FIRST_WARNING).as_secs() / DHCP_WARNING_EVERY.as_secs());
    assert_eq!(warnings.len() as u64, expected, "{warnings:#?}");
    for warning in warnings.iter() {
        assert!(warning.contains("DHCP"), "{warning}");
        assert!(
            warning.contains("ip=ADDRESS/PREFIX gw=GATEWAY"),
            "{warning}"
        );
    }
    assert!(warnings[0].contains(" 5 s"), "{}", warnings[0]);
}
