use super::*;
use crate::decision::RuleKind;
use crate::decision::UpstreamError;
use crate::decision::{Reason, Ruling};
use crate::event::EventBuilder;
use crate::verdict::Tag;

/// A plain record of a click at `ms` (its id ends in `i`): the fixture of
/// the decision log's tests.
pub(crate) fn record(ms: i64, i: u128) -> Record {
    let event = EventBuilder::from_query(&format!(
        "event_type=click&ip=10.0.0.{}&ua=x&affiliate_id=a{}&offer_id=o",
        i % 200,
        i % 3
    ))
    .unwrap()
    .build()
    .unwrap();
    Record {
        id: DecisionId(((ms as u128) << 80) | (0x7 << 76) | i),
        door: Door::Check,
        client: None,
        event: (&event).into(),
        decision: Action::Allow,
        would_be: Action::Allow,
        mode: Mode::Enforce,
        tags: Tags::clean(),
        blocked_by: Tags::clean(),
        source: Source::Cache,
        reason: "clean",
        rules: Vec::new(),
        elapsed_us: 1,
    }
}

fn event(query: &str) -> Event {
    EventBuilder::from_query(query).unwrap().build().unwrap()
}

/// A decision with every part a record keeps set to something that
/// is not a default.
fn decision() -> Decision {
    let hit = |kind, name: &str, tag, reason: Option<&str>| RuleHit {
        kind,
        name: name.into(),
        tag,
        reason: reason.map(Into::into),
    };
    Decision {
        id: DecisionId(0x0192_3456_789a_7bcd_8123_4567_89ab_cdef),
        action: Action::Allow,
        ruling: Ruling {
            action: Action::Block,
            reason: Reason::Fallback(UpstreamError::Http(502)),
            blocked_by: Tags::parse("proxy\nweird tag").unwrap(),
        },
        mode: Mode::Shadow,
        tags: Tags::parse("datacenter\nproxy\nweird tag\nother-tag").unwrap(),
        source: Source::Local,
        rules: vec![
            hit(RuleKind::Datacenter, "aws", Some(Tag::Datacenter), None),
            hit(
                RuleKind::BlockList,
                "partner list",
                Some(Tag::Blacklist),
                Some("fraud ring \u{e9}"),
            ),
            hit(RuleKind::VerifiedBot, "googlebot", None, Some("")),
        ],
        coalesced: false,
        stale: false,
        cache_ttl: std::time::Duration::ZERO,
        elapsed: std::time::Duration::from_micros(4321),
    }
}

#[test]
fn a_decision_is_decoded_as_it_was_encoded() {
    let e = event(
        "event_type=impression&ip=2001:db8::7&ua=Mozilla%2F5.0%20%C3%A9&affiliate_id=af\
         &offer_id=o1&aff_sub3=s%C3%BCb&country_code=DE&aff_sub1=&source=feed&idfa=x-1",
    );
    let d = decision();
    let r = Record::new(&e, &d, Door::OpenRtb, Some("partner".into()));
    assert_eq!(r.id, d.id);
    assert_eq!(r.door, Door::OpenRtb);
    assert_eq!(r.client.as_deref(), Some("partner"));
    assert_eq!(
        format!("{:?}", r.event),
        format!("{:?}", LoggedEvent::from(&e))
    );
    assert_eq!(
        (r.decision, r.would_be, r.mode),
        (Action::Allow, Action::Block, Mode::Shadow)
    );
    assert!(r.tags == d.tags && r.blocked_by == d.ruling.blocked_by);
    assert_eq!(r.tags.unknown().len(), 2);
    assert_eq!((r.source, r.reason), (Source::Local, "upstream_http_error"));
    assert_eq!(r.rules, d.rules);
    assert_eq!(r.elapsed_us, 4321);

    // Back to back in one buffer, each read back whole, then nothing left.
    let v4 = event("event_type=click&ip=198.51.100.9&ua=&affiliate_id=7&offer_id=8");
    let mut plain = Record::new(&v4, &d, Door::Check, None);
    plain.tags = Tags::clean();
    plain.mode = Mode::Enforce;
    plain.source = Source::Upstream;
    plain.decision = Action::Block;
    plain.would_be = Action::Allow;
    plain.event.event_type = EventType::Click;
    plain.blocked_by = Tags::from_known(&[Tag::Cap]);
    plain.rules.clear();
    plain.reason = "clean";
    let mut other = r.clone();
    other.client = Some("another".into());
    // More unknown tags than a byte counts (an RT body of short tags).
    let many: String = (0..300).map(|i| format!("t{i}\n")).collect();
    other.tags = Tags::parse(&many).unwrap();
    assert_eq!(other.tags.unknown().len(), 300);
    let mut buf = Vec::new();
    for rec in [&r, &plain, &r, &other] {
        rec.encode(&mut buf);
    }
    // As the writer reads them: one client allocation shared while it repeats.
    let (mut bytes, mut last) = (&buf[..], None);
    let mut got = Vec::new();
    for want in [&r, &plain, &r, &other] {
        got.push(Record::decode_sharing(&mut bytes, &mut last));
        assert_eq!(format!("{:?}", got.last().unwrap()), format!("{want:?}"));
    }
    let client = |i: usize| got[i].client.clone().unwrap();
    assert!(
        Arc::ptr_eq(&client(0), &client(2)),
        "one allocation while it repeats"
    );
    assert!(bytes.is_empty());
    assert_eq!(last.as_deref(), Some("another"));
}

#[test]
fn every_reason_is_recorded_as_itself() {
    use UpstreamError as U;
    // Exhaustive: a new variant fails to compile here until it is listed
    // below (and in REASONS).
    let _listed = |r: Reason| match r {
        Reason::Clean | Reason::Tags | Reason::AllowList | Reason::VerifiedBot => (),
        Reason::Fallback(
            U::Disabled
            | U::Timeout
            | U::Http(_)
            | U::Connect
            | U::BadBody(_)
            | U::Deadline
            | U::Internal
            | U::BreakerOpen
            | U::Busy,
        ) => (),
    };
    let upstream = [
        U::Disabled,
        U::Timeout,
        U::Http(500),
        U::Connect,
        U::BadBody(crate::decision::BadBody::NotTags),
        U::Deadline,
        U::Internal,
        U::BreakerOpen,
        U::Busy,
    ];
    let reasons = [
        Reason::Clean,
        Reason::Tags,
        Reason::AllowList,
        Reason::VerifiedBot,
    ]
    .into_iter()
    .chain(upstream.map(Reason::Fallback));
    let e = event("event_type=click&ip=198.51.100.9&ua=u&affiliate_id=7&offer_id=8");
    let mut d = decision();
    for reason in reasons {
        d.ruling.reason = reason;
        let r = Record::new(&e, &d, Door::Check, None);
        assert_eq!(r.reason, reason.as_str());
    }
}

/// The encoding writes discriminants and reads them back as indexes.
#[test]
fn enum_discriminants_are_their_index_in_all() {
    fn check<T: Copy + std::fmt::Debug>(all: &[T], disc: impl Fn(T) -> u8) {
        for (i, v) in all.iter().enumerate() {
            assert_eq!(disc(*v) as usize, i, "{v:?}");
        }
    }
    check(&Door::ALL, |v| v as u8);
    check(&Source::ALL, |v| v as u8);
    check(&Opt::ALL, |v| v as u8);
    check(&RuleKind::ALL, |v| v as u8);
    check(&Tag::ALL, |v| v as u8);
    check(&[Action::Allow, Action::Block], |v| v as u8);
    check(&[Mode::Enforce, Mode::Shadow], |v| v as u8);
    check(&EventType::ALL, |v| v as u8);
}

#[test]
fn keeps_every_field_of_the_event() {
    let e = EventBuilder::from_query(
        "event_type=impression&ip=2001:db8::1&ua=Mozilla%2F5.0%20%C3%A9&affiliate_id=af&offer_id=o1\
         &aff_sub2=s%C3%BCb&country_code=DE&aff_sub1=",
    )
    .unwrap()
    .build()
    .unwrap();
    let l = LoggedEvent::from(&e);
    assert_eq!(l.event_type, e.event_type);
    assert_eq!(l.ip, e.ip);
    assert_eq!(
        (l.ua(), l.affiliate_id(), l.offer_id()),
        (e.ua.as_str(), "af", "o1")
    );
    assert_eq!(
        l.optional().collect::<Vec<_>>(),
        e.optional().collect::<Vec<_>>()
    );
    assert_eq!(l.get(Opt::AffSub2), Some("süb"));
    assert_eq!(l.get(Opt::AffSub1), e.get(Opt::AffSub1));
    assert_eq!(l.get(Opt::AffSub3), None);
}

/// An `at` that is no plausible time (a load test's `at=1`) is kept as the
/// decision's second; a plausible one as given.
#[test]
fn the_record_keeps_a_plausible_event_time_only() {
    let d = decision();
    let decided = d.id.unix_ms() / 1000;
    for (at, kept) in [(1, decided), (1_544_054_769, 1_544_054_769)] {
        let e = event(&format!(
            "event_type=click&ip=1.2.3.4&ua=x&affiliate_id=1&offer_id=2&at={at}"
        ));
        let r = Record::new(&e, &d, Door::Rt, None);
        assert_eq!(r.event.at, kept, "{at}");
    }
}
