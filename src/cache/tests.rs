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
    let ttls = Ttls::new(
        Duration::from_secs(10),
        Duration::from_secs(20),
        Duration::from_secs(3),
        Duration::from_secs(5),
        Duration::from_secs(600),
    );
    let cache = VerdictCache::new(&crate::Config::default().cache);
    let e = ev(A);
    let clean = cache.value(&e, Ok(Tags::clean()), 0);
    assert_eq!(
        ttls.lifetime(clean.life()),
        Duration::from_secs(15),
        "ttl + stale_s"
    );
    let flagged = cache.value(&e, Ok(Tags::parse("proxy").unwrap()), 0);
    assert_eq!(ttls.lifetime(flagged.life()), Duration::from_secs(25));
    assert_eq!(
        ttls.lifetime(clean.clone().with_refresh_failed().life()),
        Duration::from_secs(610),
        "stale_if_error_s only once a refresh failed"
    );
    let failed = cache.value(&e, Err(UpstreamError::Timeout), 0);
    assert_eq!(ttls.lifetime(failed.life()), Duration::from_secs(3));
    // The lifetimes looked up are the ones worked out, for every value.
    let errors = [
        UpstreamError::Http(403),
        UpstreamError::BadBody(crate::decision::BadBody::NotUtf8),
        UpstreamError::Busy,
    ];
    let values = [clean, flagged, failed]
        .into_iter()
        .chain(errors.map(|u| cache.value(&e, Err(u), 0)));
    for v in values {
        for v in [v.clone(), v.with_refresh_failed()] {
            assert_eq!(ttls.life_us(v.life()), ttls.micros_of(v.life()), "{v:?}");
        }
    }
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

#[test]
fn a_slot_is_one_cache_line() {
    assert_eq!(std::mem::size_of::<Stored>(), 32);
    assert_eq!(std::mem::size_of::<Option<Stored>>(), 32);
    assert_eq!(table::slot_size::<Stored>(), 64);
}

/// What the table gives back for `v`: the stored form and its deadline,
/// made a `Cached` again the way a lookup does.
fn stored_and_back(cache: &VerdictCache, v: &Cached) -> Cached {
    let deadline = cache.ttls.deadline(v);
    let stored = Stored::new(v.clone());
    stored.to_cached(cache.ttls.fetched(stored.life(), deadline))
}

#[test]
fn a_value_comes_back_from_its_slot_as_it_went_in() {
    let mut config = crate::Config::default().cache;
    config.ttl_clean_s = Some(300);
    config.ttl_flagged_s = Some(3600);
    config.ttl_error_s = 0;
    let cache = VerdictCache::new(&config);
    let e = ev(A);
    let outcomes = [
        Ok(Tags::clean()),
        Ok(Tags::parse("proxy\ncap").unwrap()),
        Ok(Tags::parse("new-signal\nother").unwrap()),
        Ok(Tags::parse("datacenter\nnew-signal").unwrap()),
        Err(UpstreamError::Timeout),
        Err(UpstreamError::Http(503)),
        Err(UpstreamError::BadBody(crate::decision::BadBody::TooLarge)),
        Err(UpstreamError::Busy),
    ];
    for outcome in outcomes {
        let v = cache.value(&e, outcome, 7);
        let fleet = cache.value_from_fleet(
            &e,
            Tags::parse("ip").unwrap(),
            7,
            Duration::from_secs(1 << 40),
        );
        for v in [v.clone(), v.with_refresh_failed(), fleet] {
            assert_eq!(stored_and_back(&cache, &v), v);
        }
    }
}

#[tokio::test]
async fn a_hit_keeps_its_fetch_time_to_the_microsecond() {
    let cache = VerdictCache::new(&crate::Config::default().cache);
    let e = ev(A);
    let key = cache.key(&e);
    let v = cache.value(&e, Ok(Tags::parse("proxy\nnew-signal").unwrap()), 0);
    cache.insert(key, v.clone()).await;
    assert_eq!(cache.get(&key).await, Some(v));
}

#[test]
fn the_longest_lifetime_still_gives_the_fetch_time_back() {
    let mut config = crate::Config::default().cache;
    config.ttl_s = u64::MAX / 4;
    config.stale_s = 0;
    let cache = VerdictCache::new(&config);
    let v = cache.value(&ev(A), Ok(Tags::clean()), 0);
    assert_eq!(cache.ttls.deadline(&v), v.fetched + MAX_LIFE_US);
    assert_eq!(stored_and_back(&cache, &v), v);
}
