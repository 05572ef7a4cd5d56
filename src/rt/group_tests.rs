use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use smol::Timer;

#[test]
fn a_member_runs_in_the_task_and_its_output_comes_back() {
    smol::block_on(async {
        let (spawner, group) = group(4);
        let (end_tx, end_rx) = channel::bounded::<()>(1);
        let task = smol::spawn(group.run(async move {
            let _ = end_rx.recv().await;
            7
        }));
        let got = spawner
            .run(async {
                Timer::after(Duration::from_millis(10)).await;
                "done"
            })
            .await;
        assert_eq!(got, Some("done"));
        drop(end_tx);
        assert_eq!(task.await, 7);
    });
}

#[test]
fn members_end_with_the_group_and_callers_hear_it() {
    smol::block_on(async {
        let (spawner, group) = group(4);
        let (end_tx, end_rx) = channel::bounded::<()>(1);
        let task = smol::spawn(group.run(async move {
            let _ = end_rx.recv().await;
        }));
        let waiting = smol::spawn({
            let spawner = spawner.clone();
            async move { spawner.run(std::future::pending::<()>()).await }
        });
        Timer::after(Duration::from_millis(20)).await;
        drop(end_tx);
        task.await;
        assert_eq!(waiting.await, None, "a member outlived its group");
        assert!(
            !spawner.detach(async {}).await,
            "an ended group took a member"
        );
    });
}

#[test]
fn dropping_the_caller_stops_its_member() {
    smol::block_on(async {
        let (spawner, group) = group(4);
        let _task = smol::spawn(group.run(std::future::pending::<()>()));
        let (held_tx, held_rx) = channel::bounded::<()>(1);
        let caller = smol::spawn({
            let spawner = spawner.clone();
            async move {
                spawner
                    .run(async move {
                        let _held = held_tx;
                        std::future::pending::<()>().await
                    })
                    .await
            }
        });
        Timer::after(Duration::from_millis(20)).await;
        drop(caller);
        // The member (and so its sender) is dropped: the receiver sees the channel close.
        assert!(held_rx.recv().await.is_err());
    });
}

#[test]
fn many_members_make_progress_through_each_other() {
    // Members that hand a token around a ring: each hop is a wake inside the group.
    smol::block_on(async {
        let (spawner, group) = group(4);
        let _task = smol::spawn(group.run(std::future::pending::<()>()));
        const N: usize = 50;
        const LAPS: usize = 200;
        let chans: Vec<_> = (0..N).map(|_| channel::bounded::<usize>(1)).collect();
        let hops = std::sync::Arc::new(AtomicUsize::new(0));
        for i in 0..N {
            let rx = chans[i].1.clone();
            let tx = chans[(i + 1) % N].0.clone();
            let hops = hops.clone();
            assert!(
                spawner
                    .detach(async move {
                        while let Ok(lap) = rx.recv().await {
                            hops.fetch_add(1, Ordering::Relaxed);
                            if lap == LAPS {
                                return;
                            }
                            let next = if i == N - 1 { lap + 1 } else { lap };
                            if tx.send(next).await.is_err() {
                                return;
                            }
                        }
                    })
                    .await
            );
        }
        let done = spawner.run(async {}).await;
        assert_eq!(done, Some(()));
        chans[0].0.send(0).await.unwrap();
        let t = std::time::Instant::now();
        while hops.load(Ordering::Relaxed) < N * LAPS {
            assert!(t.elapsed() < Duration::from_secs(20), "stalled");
            Timer::after(Duration::from_millis(5)).await;
        }
    });
}

#[test]
fn a_busy_member_does_not_starve_other_tasks() {
    // One executor thread: a member that always wakes itself must still let others run.
    let ex = smol::LocalExecutor::new();
    smol::block_on(ex.run(async {
        let (spawner, group) = group(4);
        let _task = ex.spawn(group.run(std::future::pending::<()>()));
        let spins = std::sync::Arc::new(AtomicUsize::new(0));
        let s = spins.clone();
        assert!(
            spawner
                .detach(async move {
                    loop {
                        s.fetch_add(1, Ordering::Relaxed);
                        futures_lite::future::yield_now().await;
                    }
                })
                .await
        );
        let other = ex.spawn(async { 5 });
        assert_eq!(other.await, 5);
        assert!(spins.load(Ordering::Relaxed) > 0);
    }));
}
