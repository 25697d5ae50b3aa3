//! RT body -> tag set. Figures: docs/performance.md.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fraudgate::verdict::Tags;
use std::hint::black_box;

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("verdict");
    g.throughput(Throughput::Elements(1));
    for (id, body) in [
        ("parse/clean", ""),
        ("parse/one_tag", "datacenter"),
        (
            "parse/three_tags_crlf",
            "proxy\r\ndatacenter\r\ndynamic blacklist\r\n",
        ),
        ("parse/unknown_tag", "proxy\nsomething-new"),
    ] {
        g.bench_function(id, |b| b.iter(|| Tags::parse(black_box(body)).unwrap()));
    }
    let tags = Tags::parse("proxy\ndatacenter\ncrawler").unwrap();
    g.bench_function("render/three_tags", |b| {
        b.iter(|| {
            let mut s = String::with_capacity(32);
            black_box(&tags).write_rt(&mut s);
            s
        })
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
