use super::*;
use crate::event::EventBuilder;

fn ev(q: &str) -> Event {
    EventBuilder::from_query(q).unwrap().build().unwrap()
}

const A: &str = "event_type=click&ip=1.2.3.4&ua=x&offer_id=1&affiliate_id=2";

#[test]
fn default_key_ignores_offer_and_affiliate() {
    let k = Keyer::new(&[KeyPart::Ip, KeyPart::Ua]);
    let b = A
        .replace("offer_id=1", "offer_id=9")
        .replace("click", "impression");
    assert_eq!(k.key(&ev(A)), k.key(&ev(&b)));
    assert_ne!(k.key(&ev(A)), k.key(&ev(&A.replace("ua=x", "ua=y"))));
    assert_ne!(k.key(&ev(A)), k.key(&ev(&A.replace("1.2.3.4", "1.2.3.5"))));
}

#[test]
fn configured_parts_split_keys() {
    let k = Keyer::new(&[
        KeyPart::Ip,
        KeyPart::Ua,
        KeyPart::OfferId,
        KeyPart::EventType,
    ]);
    assert_ne!(
        k.key(&ev(A)),
        k.key(&ev(&A.replace("offer_id=1", "offer_id=9")))
    );
    assert_ne!(k.key(&ev(A)), k.key(&ev(&A.replace("click", "impression"))));
}

#[test]
fn entries_live_only_as_long_as_they_can_be_served() {
    let ttls = Ttls {
        clean: Duration::from_secs(10),
        flagged: Duration::from_secs(20),
        error: Duration::from_secs(3),
        stale: Duration::from_secs(5),
        stale_if_error: Duration::from_secs(600),
    };
    let cache = VerdictCache::new(&crate::Config::default().cache);
    let e = ev(A);
    let clean = cache.value(&e, Ok(Tags::clean()), 0);
    assert_eq!(
        ttls.lifetime(&clean),
        Duration::from_secs(15),
        "ttl + stale_s"
    );
    let flagged = cache.value(&e, Ok(Tags::parse("proxy").unwrap()), 0);
    assert_eq!(ttls.lifetime(&flagged), Duration::from_secs(25));
    assert_eq!(
        ttls.lifetime(&clean.with_refresh_failed()),
        Duration::from_secs(610),
        "stale_if_error_s only once a refresh failed"
    );
    let failed = cache.value(&e, Err(UpstreamError::Timeout), 0);
    assert_eq!(ttls.lifetime(&failed), Duration::from_secs(3));
}

#[test]
fn parts_do_not_run_into_each_other() {
    let k = Keyer::new(&[KeyPart::Ua, KeyPart::OfferId]);
    let a = ev("event_type=click&ip=1.1.1.1&ua=ab&offer_id=c&affiliate_id=1");
    let b = ev("event_type=click&ip=1.1.1.1&ua=a&offer_id=bc&affiliate_id=1");
    assert_ne!(k.key(&a), k.key(&b));
}

#[tokio::test]
async fn a_finished_fetch_not_yet_cleared_is_not_joined_once_its_value_is_gone() {
    // The window between a fetch's end and its caller taking its cell out
    // of `inflight`: a request that invalidated the value (a purge covered
    // it) and fills again must run its own fetch, not be handed the same
    // value back.
    let cache = VerdictCache::new(&crate::Config::default().cache);
    let e = ev(A);
    let key = cache.key(&e);
    let old = cache.value(&e, Ok(Tags::parse("proxy").unwrap()), 0);
    let done = Arc::new(OnceCell::new_with(Some(old)));
    cache.inflight.lock().unwrap().insert(key, done);
    let fresh = cache.value(&e, Ok(Tags::clean()), 0);
    let (v, ran) = cache.get_or_fetch(key, async { fresh }).await;
    assert!(ran, "a fetch of its own");
    assert!(matches!(&v.outcome, Ok(t) if t.is_clean()));
}
