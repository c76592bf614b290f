//! Unit tests that reach into the heap: corruption detection, slot retirement and
//! the tie counter wrap.

use super::*;

fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

#[test]
fn full_check_passes_after_many_random_operations() {
    let mut q = Psq::new();
    let mut keys = Vec::new();
    let mut s = 42u64;
    for _ in 0..10_000 {
        match lcg(&mut s) % 5 {
            0 | 1 => keys.push(q.insert(lcg(&mut s) % 1000, ())),
            2 if !keys.is_empty() => {
                let k = keys.swap_remove(lcg(&mut s) as usize % keys.len());
                q.remove(k);
            }
            3 if !keys.is_empty() => {
                let k = keys[lcg(&mut s) as usize % keys.len()];
                q.change_priority(k, lcg(&mut s) % 1000);
            }
            _ => {
                if let Some((k, _, _)) = q.pop() {
                    keys.retain(|&x| x != k);
                }
            }
        }
    }
    assert_eq!(q.check_invariants(), Ok(()));
    assert_eq!(q.len(), keys.len());
}

#[test]
fn corrupted_heap_is_detected() {
    let mut q = Psq::new();
    for p in 0..20 {
        q.insert(p, ());
    }
    assert_eq!(q.check_invariants(), Ok(()));
    q.swap_heap_entries_unchecked(0, 5);
    let err = q.check_invariants().unwrap_err();
    assert!(err.contains("heap[0]"), "{err}");
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "Psq heap invariant violated")]
fn debug_builds_catch_a_corrupted_heap_on_the_next_operation() {
    let mut q = Psq::new();
    for p in 0..20 {
        q.insert(p, ());
    }
    // Break the order between heap[1] and its child heap[5]; the next operation
    // that touches heap[5] must notice.
    q.heap[1].priority = 100;
    let child = Key {
        index: q.heap[5].slot,
        generation: 0,
    };
    q.change_priority(child, 6);
}

#[test]
fn ties_stay_first_in_first_out_across_a_tie_counter_wrap() {
    let mut q = Psq::new();
    q.next_tie = u32::MAX - 3;
    let keys: Vec<_> = (0..8).map(|i| q.insert(i % 2, i)).collect();
    q.change_priority(keys[0], 1);
    q.change_priority(keys[0], 0);
    assert_eq!(q.check_invariants(), Ok(()));
    let popped: Vec<_> = std::iter::from_fn(|| q.pop()).map(|(_, _, v)| v).collect();
    assert_eq!(popped, [0, 2, 4, 6, 1, 3, 5, 7]);
}

#[test]
fn exhausted_generation_retires_the_slot() {
    let mut q: Psq<u32, u32> = Psq::new();
    let k = q.insert(1, 1);
    q.slots[0].generation = u32::MAX;
    let k = Key {
        generation: u32::MAX,
        ..k
    };
    assert_eq!(q.remove(k), Some((1, 1)));
    let k2 = q.insert(2, 2);
    assert_ne!(k2.index, k.index);
    assert_eq!(q.get(k), None);
    q.clear();
    assert_eq!(q.check_invariants(), Ok(()));
    let k3 = q.insert(3, 3);
    assert_ne!(k3.index, 0);
}

#[test]
fn an_entry_costs_a_heap_entry_and_a_slot() {
    use std::mem::size_of;
    // A heap entry: the priority, the slot index and the tie; for u64 priorities the two
    // u32s fill what would be padding. Exact on every pointer width: u64 is aligned to 4
    // on i686 and to 8 elsewhere, and the entry is 16 bytes either way.
    assert_eq!(size_of::<HeapEntry<u64>>(), 16);
    // A slot: the value (behind an Option), the generation and the heap position. On
    // i686 an Option<[u64; 2]> is 20 bytes (tag aligned to 4), on 64-bit targets 24.
    assert_eq!(
        size_of::<Slot<[u64; 2]>>(),
        size_of::<Option<[u64; 2]>>() + 2 * size_of::<u32>()
    );
    assert!(size_of::<Slot<[u64; 2]>>() <= 32);
}
