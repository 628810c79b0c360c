//! Subscription matching, the broker's per-message lookup: a tree of 10,000 filters typical of
//! a building of sensors (exact topics, `+` per floor, `#` per building, a few catch-alls),
//! matched against topics that hit a handful of them and topics that hit none.

use broker_core::SubscriptionTree;
use criterion::{Criterion, criterion_main};
use std::hint::black_box;

fn tree() -> SubscriptionTree<u32, ()> {
    let mut tree = SubscriptionTree::new();
    let mut key = 0;
    let mut add = |filter: String| {
        tree.insert(&filter, key, ());
        key += 1;
    };
    for building in 0..10 {
        add(format!("sensors/building-{building}/#"));
        for floor in 0..10 {
            add(format!(
                "sensors/building-{building}/floor-{floor}/+/temperature"
            ));
            for room in 0..98 {
                add(format!(
                    "sensors/building-{building}/floor-{floor}/room-{room}/temperature"
                ));
            }
        }
    }
    add("#".into());
    add("+/+/+/+/humidity".into());
    tree
}

fn bench(c: &mut Criterion) {
    let tree = tree();
    let mut group = c.benchmark_group("subscription tree");
    for (name, topic) in [
        (
            "hit 4 filters",
            "sensors/building-3/floor-7/room-42/temperature",
        ),
        ("hit only catch-alls", "alerts/building-3/fire"),
        ("$SYS, no wildcard match", "$SYS/broker/uptime"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut count = 0u32;
                tree.for_each_match(black_box(topic), |_, _| count += 1);
                black_box(count)
            })
        });
    }
    group.finish();
}

fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
}

criterion_main!(benches);
