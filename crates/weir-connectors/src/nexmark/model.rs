//! The arithmetic of the Nexmark generator (Beam's, which Flink's ports): which kind each
//! event is, the ids it gets, its event time, and the biased choice of the people and
//! auctions it refers to. Everything here follows from the event counter; only the field
//! contents (in `fields.rs`) are random.

/// Out of every [`TOTAL`] consecutive event ids, this many are people…
pub const PERSON_PROPORTION: i64 = 1;
/// …this many auctions…
pub const AUCTION_PROPORTION: i64 = 3;
/// …and the rest bids.
pub const TOTAL: i64 = 50;
/// Person and auction ids are base-0 ids plus this.
pub const FIRST_ID: i64 = 1000;
/// Categories are 10 to 14.
pub const FIRST_CATEGORY_ID: i64 = 10;
/// Number of categories.
pub const NUM_CATEGORIES: u64 = 5;
/// Bids and auctions refer to one of the last this many people…
const NUM_ACTIVE_PEOPLE: i64 = 1000;
/// …or one of the next this many, not yet created.
const PERSON_ID_LEAD: i64 = 10;
/// Bids refer to one of the last this many auctions…
const NUM_IN_FLIGHT_AUCTIONS: i64 = 100;
/// …or one of the next this many.
const AUCTION_ID_LEAD: i64 = 10;
/// A bid is for the hot auction with probability 1 − 1/2.
const HOT_AUCTION_RATIO: u32 = 2;
/// An auction's seller is the hot seller with probability 1 − 1/4.
const HOT_SELLER_RATIO: u32 = 4;
/// A bid's bidder is the hot bidder with probability 1 − 1/4.
const HOT_BIDDER_RATIO: u32 = 4;
/// Hot ids change every this many people or auctions.
const HOT_ID_STEP: i64 = 100;
/// Events ahead whose time span sets the auction length: about `NUM_IN_FLIGHT_AUCTIONS`
/// auctions are open at any time.
const AUCTION_EVENTS_AHEAD: u64 = (NUM_IN_FLIGHT_AUCTIONS * TOTAL / AUCTION_PROPORTION) as u64;
/// Unbounded generators split this many event ids between them (as Flink: `Long.MAX` over 50
/// times the largest average event size).
const UNBOUNDED_EVENTS: u64 = (i64::MAX / (TOTAL * 500)) as u64;

/// The kind of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A new user.
    Person,
    /// An item put up for sale.
    Auction,
    /// A bid on an auction.
    Bid,
}

impl Kind {
    /// The kind held by the table of this name.
    pub fn of_table(table: &str) -> Kind {
        match table {
            "person" => Kind::Person,
            "auction" => Kind::Auction,
            _ => Kind::Bid,
        }
    }
}

/// The kind of the event with this id: in each block of 50 ids, 1 person, 3 auctions, 46 bids.
pub fn kind_of(event_id: i64) -> Kind {
    let r = event_id.rem_euclid(TOTAL);
    if r < PERSON_PROPORTION {
        Kind::Person
    } else if r < PERSON_PROPORTION + AUCTION_PROPORTION {
        Kind::Auction
    } else {
        Kind::Bid
    }
}

/// The first event number from `n` on whose event (id `first_id + n`, events in order: no
/// out-of-order shuffle) is of `kind`, stepping as an instance that takes one block of `block`
/// numbers in every `stride` does (from the end of one of its blocks to the start of its
/// next); past `end`, some number at or past it.
pub fn next_of_kind(kind: Kind, first_id: i64, mut n: u64, end: u64, block: u64, stride: u64) -> u64 {
    let (lo, hi) = match kind {
        Kind::Person => (0, PERSON_PROPORTION),
        Kind::Auction => (PERSON_PROPORTION, PERSON_PROPORTION + AUCTION_PROPORTION),
        Kind::Bid => (PERSON_PROPORTION + AUCTION_PROPORTION, TOTAL),
    };
    let block = block.max(1);
    while n < end {
        let r = (first_id + n as i64).rem_euclid(TOTAL);
        let ahead = match r {
            r if r < lo => lo - r,
            r if r < hi => 0,
            r => TOTAL - r + lo,
        } as u64;
        let left = block - n % block;
        if ahead < left {
            return n + ahead;
        }
        n += left;
        if stride > 1 {
            n += (stride - 1) * block;
        }
    }
    n
}

/// The id (base 0) of the most recent person at this event.
pub fn last_base0_person_id(event_id: i64) -> i64 {
    let (epoch, offset) = (event_id / TOTAL, event_id % TOTAL);
    epoch * PERSON_PROPORTION + offset.min(PERSON_PROPORTION - 1)
}

/// The id (base 0) of the most recent auction at this event.
pub fn last_base0_auction_id(event_id: i64) -> i64 {
    let (epoch, offset) = (event_id / TOTAL, event_id % TOTAL);
    if offset < PERSON_PROPORTION {
        (epoch - 1) * AUCTION_PROPORTION + AUCTION_PROPORTION - 1
    } else if offset >= PERSON_PROPORTION + AUCTION_PROPORTION {
        epoch * AUCTION_PROPORTION + AUCTION_PROPORTION - 1
    } else {
        epoch * AUCTION_PROPORTION + offset - PERSON_PROPORTION
    }
}

/// One of the last 1000 people, or of the next 10 (base 0).
fn random_person(event_id: i64, rng: &mut fastrand::Rng) -> i64 {
    let people = last_base0_person_id(event_id) + 1;
    let active = people.min(NUM_ACTIVE_PEOPLE);
    people - active + rng.i64(0..active + PERSON_ID_LEAD)
}

/// One of the last 100 auctions, or of the next 10 (base 0).
fn random_auction(event_id: i64, rng: &mut fastrand::Rng) -> i64 {
    let last = last_base0_auction_id(event_id).max(0);
    let min = (last - NUM_IN_FLIGHT_AUCTIONS).max(0);
    rng.i64(min..=last + AUCTION_ID_LEAD)
}

/// The seller of a new auction: the hot seller (most recent person whose base-0 id is a
/// multiple of 100) with probability 3/4, else a random active person.
pub fn seller(event_id: i64, rng: &mut fastrand::Rng) -> i64 {
    FIRST_ID
        + if rng.u32(0..HOT_SELLER_RATIO) > 0 {
            (last_base0_person_id(event_id) / HOT_ID_STEP) * HOT_ID_STEP
        } else {
            random_person(event_id, rng)
        }
}

/// The auction of a bid: the hot auction with probability 1/2, else one in flight.
pub fn bid_auction(event_id: i64, rng: &mut fastrand::Rng) -> i64 {
    FIRST_ID
        + if rng.u32(0..HOT_AUCTION_RATIO) > 0 {
            (last_base0_auction_id(event_id).max(0) / HOT_ID_STEP) * HOT_ID_STEP
        } else {
            random_auction(event_id, rng)
        }
}

/// The bidder of a bid: the hot bidder (one past the hot seller) with probability 3/4, else a
/// random active person.
pub fn bidder(event_id: i64, rng: &mut fastrand::Rng) -> i64 {
    FIRST_ID
        + if rng.u32(0..HOT_BIDDER_RATIO) > 0 {
            (last_base0_person_id(event_id) / HOT_ID_STEP) * HOT_ID_STEP + 1
        } else {
            random_person(event_id, rng)
        }
}

/// One generator's timeline: event numbers to event times, and the shuffling of
/// out-of-order groups.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    /// Event time of event number 0, in milliseconds.
    pub base_ms: i64,
    /// Microseconds of event time between two events of this generator.
    pub delay_us: f64,
    /// Shuffle events within groups of this many.
    pub group: u64,
}

impl Timeline {
    /// `rate` events per second of event time across `splits` generators on the same timeline.
    pub fn new(base_ms: i64, rate: u64, splits: u32, group: u64) -> Self {
        Self { base_ms, delay_us: 1e6 / rate as f64 * f64::from(splits), group: group.max(1) }
    }

    /// The event number whose event event number `n` is: a fixed shuffle within each group
    /// (a last group cut short by `end` is left in order, so no event leaves the range).
    pub fn adjust(&self, n: u64, end: u64) -> u64 {
        let g = self.group;
        let start = (n / g) * g;
        if g == 1 || start.saturating_add(g) > end {
            n
        } else {
            start + ((n % g) * (953 % g)) % g
        }
    }

    /// Event time of (adjusted) event number `n`, in milliseconds.
    pub fn timestamp_ms(&self, n: u64) -> i64 {
        self.base_ms + ((n as f64 * self.delay_us) as i64) / 1000
    }

    /// How long an auction created at event number `n` runs: about the time the next
    /// 100 auctions take to appear, between 1 ms and twice that.
    pub fn auction_length_ms(&self, n: u64, rng: &mut fastrand::Rng) -> i64 {
        let horizon = self.timestamp_ms(n + AUCTION_EVENTS_AHEAD) - self.timestamp_ms(n);
        1 + rng.i64(0..(2 * horizon).max(1))
    }
}

/// The event ids one of `splits` parallel generators produces: a disjoint block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// Id of this generator's event number 0.
    pub first_event_id: i64,
    /// Events it generates (of all kinds); `None` = unbounded.
    pub events: Option<u64>,
}

/// Divide `events` (all kinds, `None` = unbounded) between `n` generators, as Beam does: equal
/// blocks of ids, the last taking the remainder.
pub fn splits(events: Option<u64>, n: u32) -> Vec<Split> {
    let n = u64::from(n.max(1));
    let total = events.unwrap_or(UNBOUNDED_EVENTS);
    let each = total / n;
    (0..n)
        .map(|i| Split {
            first_event_id: (i * each) as i64,
            events: events.map(|_| if i + 1 == n { total - i * each } else { each }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_interleave_one_three_forty_six() {
        let kinds: Vec<Kind> = (0..100).map(kind_of).collect();
        assert_eq!(kinds[0], Kind::Person);
        assert_eq!(&kinds[1..4], &[Kind::Auction; 3]);
        assert!(kinds[4..50].iter().all(|k| *k == Kind::Bid));
        assert_eq!(kinds[50], Kind::Person);
        assert_eq!(kinds.iter().filter(|k| **k == Kind::Bid).count(), 92);
    }

    #[test]
    fn ids_follow_the_event_id() {
        // event 0 is person 1000; events 1-3 auctions 1000-1002; event 50 person 1001
        assert_eq!(last_base0_person_id(0), 0);
        assert_eq!(last_base0_person_id(49), 0);
        assert_eq!(last_base0_person_id(50), 1);
        assert_eq!((1..4).map(last_base0_auction_id).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(last_base0_auction_id(4), 2, "a bid sees the epoch's last auction");
        assert_eq!(last_base0_auction_id(50), 2, "a person sees the previous epoch's last auction");
        assert_eq!((51..54).map(last_base0_auction_id).collect::<Vec<_>>(), vec![3, 4, 5]);
    }

    #[test]
    fn references_stay_in_the_active_windows_and_hot_keys_dominate() {
        let mut rng = fastrand::Rng::with_seed(7);
        let event = 500_000; // person 10000, auctions up to 30002
        let (mut hot_bidders, mut hot_auctions) = (0, 0);
        for _ in 0..10_000 {
            let b = bidder(event, &mut rng) - FIRST_ID;
            assert!((10_000 - 1000..10_000 + 1 + PERSON_ID_LEAD).contains(&b), "{b}");
            hot_bidders += usize::from(b == 10_001);
            let a = bid_auction(event + 4, &mut rng) - FIRST_ID;
            assert!((30_002 - 100..=30_002 + AUCTION_ID_LEAD).contains(&a), "{a}");
            hot_auctions += usize::from(a == 30_000);
        }
        assert!((7_200..7_800).contains(&hot_bidders), "about 3/4 hot bidders: {hot_bidders}");
        assert!((4_700..5_300).contains(&hot_auctions), "about 1/2 hot auctions: {hot_auctions}");
        let s = seller(event, &mut rng) - FIRST_ID;
        assert!((9_000..10_011).contains(&s));
    }

    #[test]
    fn time_follows_the_rate_and_groups_shuffle() {
        let t = Timeline::new(1_000, 10_000, 1, 1);
        assert_eq!(t.timestamp_ms(0), 1_000);
        assert_eq!(t.timestamp_ms(10_000), 2_000, "10 000 events per second");
        let two = Timeline::new(0, 10_000, 2, 1);
        assert_eq!(two.timestamp_ms(5_000), 1_000, "two generators share one timeline");
        let g = Timeline::new(0, 10_000, 1, 50);
        let mut shuffled: Vec<u64> = (100..150).map(|n| g.adjust(n, u64::MAX)).collect();
        assert_ne!(shuffled, (100..150).collect::<Vec<_>>());
        shuffled.sort_unstable();
        assert_eq!(shuffled, (100..150).collect::<Vec<_>>(), "a permutation within the group");
        // a group cut short by the end of the input stays in order
        assert_eq!((100..120).map(|n| g.adjust(n, 120)).collect::<Vec<_>>(), (100..120).collect::<Vec<_>>());
        // auctions last about the time 1666 events take: 166 ms at 10 000/s
        let mut rng = fastrand::Rng::with_seed(1);
        let lengths: Vec<i64> = (0..1000).map(|_| t.auction_length_ms(0, &mut rng)).collect();
        assert!(lengths.iter().all(|l| (1..=333).contains(l)));
    }

    #[test]
    fn splits_cover_the_ids_once() {
        assert_eq!(
            splits(Some(10), 3).iter().map(|s| (s.first_event_id, s.events)).collect::<Vec<_>>(),
            vec![(0, Some(3)), (3, Some(3)), (6, Some(4))]
        );
        assert_eq!(splits(None, 1)[0].events, None);
    }
}
