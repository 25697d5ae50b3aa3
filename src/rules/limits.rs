//! Caps (`cap`) and IP velocity (`ip`): counters over fixed windows.

use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;

use super::counters::WindowCounters;
use crate::event::{Event, EventType, Opt};
use crate::hash::Hasher128;

/// Event fields a cap can be keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapField {
    AffiliateId,
    OfferId,
    AdvertiserId,
    AffSub1,
    Ip,
}

/// Which events a cap counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapEvents {
    Click,
    Impression,
    Any,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapConfig {
    /// Shown in decisions and logs.
    pub name: String,
    /// Fields whose values form one counter, e.g. ["affiliate_id", "offer_id"].
    pub by: Vec<CapField>,
    /// Events allowed per window; the next ones are tagged `cap`.
    pub limit: u64,
    pub window_s: u64,
    #[serde(default = "any_events")]
    pub events: CapEvents,
}

fn any_events() -> CapEvents {
    CapEvents::Any
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VelocityConfig {
    pub enabled: bool,
    pub window_s: u64,
    /// Events from one IP per window before `ip` is tagged.
    pub per_ip: u64,
    /// Events from one /24 (IPv4) or /64 (IPv6) per window.
    pub per_subnet: u64,
    /// Most IPs and subnets tracked at once (memory bound).
    pub max_tracked: u64,
}

pub struct Cap {
    pub name: Arc<str>,
    by: Box<[CapField]>,
    limit: u64,
    events: CapEvents,
    counters: WindowCounters,
}

/// Counters for one cap may hold this many keys at most.
const MAX_CAP_KEYS: u64 = 1_000_000;

impl Cap {
    pub fn new(c: &CapConfig) -> Self {
        Cap {
            name: c.name.as_str().into(),
            by: c.by.clone().into(),
            limit: c.limit,
            events: c.events,
            counters: WindowCounters::new(c.window_s, MAX_CAP_KEYS),
        }
    }

    /// Does this cap count `ev`'s kind of event?
    pub fn counts(&self, ev: &Event) -> bool {
        !matches!(
            (self.events, ev.event_type),
            (CapEvents::Click, EventType::Impression) | (CapEvents::Impression, EventType::Click)
        )
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn window_s(&self) -> u64 {
        self.counters.window_s()
    }

    /// The counter's name for the fleet (the same on every replica): the
    /// cap, the window and a SHA-256 of the values it is keyed by.
    pub fn shared_key(&self, ev: &Event, now: u64, hash: &crate::hash::KeyedHash) -> String {
        let mut h = hash.start();
        for f in &*self.by {
            match f {
                CapField::AffiliateId => h.part(&ev.affiliate_id),
                CapField::OfferId => h.part(&ev.offer_id),
                CapField::AdvertiserId => h.part(ev.get(Opt::AdvertiserId).unwrap_or("")),
                CapField::AffSub1 => h.part(ev.get(Opt::AffSub1).unwrap_or("")),
                CapField::Ip => h.part(&ev.ip.to_canonical().to_string()),
            };
        }
        format!("cap:{}:{}:{}", self.name, now / self.window_s(), h.hex(16))
    }

    /// Counts the event; true when it is over the cap.
    pub fn over(&self, ev: &Event, hasher: &Hasher128, now: u64) -> bool {
        if !self.counts(ev) {
            return false;
        }
        let mut h = hasher.start();
        self.name.hash(&mut h);
        for f in &*self.by {
            match f {
                CapField::AffiliateId => ev.affiliate_id.hash(&mut h),
                CapField::OfferId => ev.offer_id.hash(&mut h),
                CapField::AdvertiserId => ev.get(Opt::AdvertiserId).hash(&mut h),
                CapField::AffSub1 => ev.get(Opt::AffSub1).hash(&mut h),
                CapField::Ip => ev.ip.hash(&mut h),
            }
        }
        self.counters.hit(h.finish128(), now) > self.limit
    }

    pub fn tracked(&self) -> u64 {
        self.counters.tracked()
    }
}

/// The /24 (IPv4) or /64 (IPv6) of an address.
fn subnet(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & 0xffff_ff00).into()),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
    }
}

pub struct Velocity {
    per_ip: u64,
    per_subnet: u64,
    counters: WindowCounters,
}

/// What velocity found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VelocityHit {
    Ip,
    Subnet,
}

impl Velocity {
    pub fn new(c: &VelocityConfig) -> Self {
        Velocity {
            per_ip: c.per_ip,
            per_subnet: c.per_subnet,
            counters: WindowCounters::new(c.window_s, c.max_tracked),
        }
    }

    pub fn check(&self, ip: IpAddr, hasher: &Hasher128, now: u64) -> Option<VelocityHit> {
        let ip_count = self.counters.hit(hasher.hash((0u8, ip)), now);
        let net_count = self.counters.hit(hasher.hash((1u8, subnet(ip))), now);
        self.judge(ip_count, net_count)
    }

    /// The fleet-wide counter names for `ip` now: (ip, subnet).
    pub fn shared_keys(&self, ip: IpAddr, now: u64, hash: &crate::hash::KeyedHash) -> [String; 2] {
        let w = now / self.counters.window_s();
        let ip = ip.to_canonical();
        [
            format!("vel:ip:{}:{w}", hash.hex_of(&ip.to_string(), 16)),
            format!("vel:net:{}:{w}", hash.hex_of(&subnet(ip).to_string(), 16)),
        ]
    }

    pub fn window_s(&self) -> u64 {
        self.counters.window_s()
    }

    /// What counts of this window say.
    pub fn judge(&self, ip_count: u64, net_count: u64) -> Option<VelocityHit> {
        if ip_count > self.per_ip {
            Some(VelocityHit::Ip)
        } else if net_count > self.per_subnet {
            Some(VelocityHit::Subnet)
        } else {
            None
        }
    }

    pub fn tracked(&self) -> u64 {
        self.counters.tracked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventBuilder;

    fn ev(ip: &str, aff: &str, offer: &str, kind: &str) -> Event {
        EventBuilder::from_query(&format!(
            "event_type={kind}&ip={ip}&ua=x&affiliate_id={aff}&offer_id={offer}"
        ))
        .unwrap()
        .build()
        .unwrap()
    }

    #[test]
    fn a_cap_counts_per_key_and_event_kind() {
        let cap = Cap::new(&CapConfig {
            name: "aff-offer".into(),
            by: vec![CapField::AffiliateId, CapField::OfferId],
            limit: 2,
            window_s: 3600,
            events: CapEvents::Click,
        });
        let h = Hasher128::new();
        let a = ev("1.1.1.1", "1", "9", "click");
        assert!(!cap.over(&a, &h, 0));
        assert!(!cap.over(&ev("2.2.2.2", "1", "9", "click"), &h, 0));
        assert!(cap.over(&a, &h, 0), "third click for affiliate 1 + offer 9");
        assert!(
            !cap.over(&ev("1.1.1.1", "1", "8", "click"), &h, 0),
            "other offer"
        );
        assert!(
            !cap.over(&ev("1.1.1.1", "1", "9", "impression"), &h, 0),
            "impressions not counted"
        );
        assert!(!cap.over(&a, &h, 3600), "next window");
    }

    #[test]
    fn velocity_still_flags_a_fast_ip_while_a_distributed_attack_fills_the_counters() {
        let v = Velocity::new(&VelocityConfig {
            enabled: true,
            window_s: 60,
            per_ip: 3,
            per_subnet: 1_000_000,
            max_tracked: 256,
        });
        let h = Hasher128::new();
        // Far more distinct IPs than max_tracked.
        for i in 0..20_000u32 {
            v.check(IpAddr::V4((0x0a00_0000 + i * 256).into()), &h, 0);
        }
        assert!(v.tracked() <= 256 + 64);
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let hits: Vec<_> = (0..4).map(|_| v.check(ip, &h, 0)).collect();
        assert_eq!(hits[3], Some(VelocityHit::Ip), "{hits:?}");
    }

    #[test]
    fn velocity_flags_an_ip_then_its_subnet() {
        let v = Velocity::new(&VelocityConfig {
            enabled: true,
            window_s: 60,
            per_ip: 2,
            per_subnet: 4,
            max_tracked: 1000,
        });
        let h = Hasher128::new();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(v.check(ip("10.0.0.1"), &h, 0), None);
        assert_eq!(v.check(ip("10.0.0.1"), &h, 0), None);
        assert_eq!(v.check(ip("10.0.0.1"), &h, 0), Some(VelocityHit::Ip));
        assert_eq!(v.check(ip("10.0.0.2"), &h, 0), None);
        assert_eq!(
            v.check(ip("10.0.0.3"), &h, 0),
            Some(VelocityHit::Subnet),
            "5th event in 10.0.0.0/24"
        );
        assert_eq!(v.check(ip("10.0.1.3"), &h, 0), None, "other /24");
        for _ in 0..4 {
            v.check(ip("2001:db8::1"), &h, 0);
        }
        assert_eq!(
            v.check(ip("2001:db8::ffff"), &h, 0),
            Some(VelocityHit::Subnet),
            "same /64"
        );
    }
}
