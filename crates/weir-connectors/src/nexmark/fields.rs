//! The field values of Nexmark events, built straight into Arrow columns.
//!
//! Each field of each event draws from its own random stream, seeded by the generator's seed,
//! the event id and the field. So a value does not depend on which other columns a query
//! reads (a query reading only `price` skips the strings), nor on how the events are cut into
//! batches or splits; and two tables over the same generator agree on every event.

use std::fmt::Write;
use std::sync::Arc;

use datafusion_common::arrow::array::{ArrayRef, Int64Array, StringBuilder, TimestampMillisecondArray};

use super::model::{
    bid_auction, bidder, last_base0_auction_id, last_base0_person_id, seller, Kind, Timeline, FIRST_CATEGORY_ID,
    FIRST_ID, NUM_CATEGORIES,
};

const FIRST_NAMES: [&str; 11] =
    ["Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"];
const LAST_NAMES: [&str; 9] = ["Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"];
const CITIES: [&str; 10] =
    ["Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne"];
const STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
/// A bid comes through a hot channel with probability 1 − 1/2.
const HOT_CHANNELS_RATIO: u32 = 2;
/// Other bids come through `channel-0` … `channel-9999`.
const CHANNELS: usize = 10_000;
/// Average sizes in bytes the `extra` column pads each event to.
const AVG_PERSON: usize = 200;
const AVG_AUCTION: usize = 500;
const AVG_BID: usize = 100;
/// Letters `extra` is cut from.
const POOL: usize = 1 << 16;

/// Field tags: each (event, field) pair has its own random stream.
mod tag {
    pub const NAME: u64 = 1;
    pub const EMAIL: u64 = 2;
    pub const CARD: u64 = 3;
    pub const CITY: u64 = 4;
    pub const STATE: u64 = 5;
    pub const EXTRA: u64 = 6;
    pub const ITEM: u64 = 7;
    pub const DESCRIPTION: u64 = 8;
    pub const INITIAL_BID: u64 = 9;
    pub const RESERVE: u64 = 10;
    pub const EXPIRES: u64 = 11;
    pub const SELLER: u64 = 12;
    pub const CATEGORY: u64 = 13;
    pub const AUCTION: u64 = 14;
    pub const BIDDER: u64 = 15;
    pub const PRICE: u64 = 16;
    pub const CHANNEL: u64 = 17;
}

fn mix(mut z: u64) -> u64 {
    // splitmix64's finaliser
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What is the same for every event of a generator: the seed and the strings made once.
#[derive(Debug)]
pub struct Shared {
    seed: u64,
    /// `channel-<k>` and its URL, for each k.
    channels: Vec<(String, String)>,
    /// The hot channels' URLs.
    hot_urls: [String; 4],
    /// Random letters `extra` is cut from.
    pool: String,
}

/// A random string as Nexmark makes them: 3 to `max - 1` characters, each a letter or (1 in
/// 13) `pad`, with spaces trimmed.
fn random_string(rng: &mut fastrand::Rng, max: usize, pad: char, out: &mut String) {
    let start = out.len();
    let len = rng.usize(3..max);
    for _ in 0..len {
        out.push(if rng.u32(0..13) == 0 { pad } else { char::from(b'a' + rng.u8(0..26)) });
    }
    if pad == ' ' {
        let s = &out[start..];
        let (lead, keep) = (s.len() - s.trim_start().len(), s.trim().len());
        out.replace_range(start..start + lead, "");
        out.truncate(start + keep);
    }
}

fn url(rng: &mut fastrand::Rng) -> String {
    let mut s = String::from("https://www.nexmark.com/");
    for _ in 0..3 {
        random_string(rng, 5, '_', &mut s);
        s.push('/');
    }
    s.push_str("item.htm?query=1");
    s
}

impl Shared {
    /// The tables of a generator with this seed.
    pub fn new(seed: u64) -> Arc<Self> {
        let mut rng = fastrand::Rng::with_seed(mix(seed ^ 0x6E65_786D_6172_6B00));
        let hot_urls = HOT_CHANNELS.map(|_| url(&mut rng));
        let channels = (0..CHANNELS)
            .map(|k| {
                let mut u = url(&mut rng);
                // 9 in 10 channel URLs carry the channel's id, bit-reversed (what q21 extracts)
                if rng.u32(0..10) > 0 {
                    let _ = write!(u, "&channel_id={}", (k as i32).reverse_bits().unsigned_abs());
                }
                (format!("channel-{k}"), u)
            })
            .collect();
        let pool = (0..POOL).map(|_| char::from(b'a' + rng.u8(0..26))).collect();
        Arc::new(Self { seed: mix(seed), channels, hot_urls, pool })
    }

    fn rng(&self, event_id: i64, field: u64) -> fastrand::Rng {
        fastrand::Rng::with_seed(mix(self.seed ^ (event_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ field))
    }

    /// `extra`: letters padding an event of `current` bytes to about `avg` (±20%).
    fn extra(&self, event_id: i64, avg: usize, current: usize) -> &str {
        if current > avg {
            return "";
        }
        let d = avg - current;
        let delta = (0.2 * d as f64).round() as usize;
        let mut rng = self.rng(event_id, tag::EXTRA);
        let len = if delta == 0 { d } else { rng.usize(d - delta..d + delta) };
        let start = rng.usize(0..=POOL - len);
        &self.pool[start..start + len]
    }
}

/// A log-uniform price from 100 to 100 000 000 (cents).
fn price(rng: &mut fastrand::Rng) -> i64 {
    (10f64.powf(rng.f64() * 6.0) * 100.0).round() as i64
}

/// The fields of the three kinds of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `person.id` / `auction.id`.
    Id,
    /// `person.name`.
    Name,
    /// `person.email_address`.
    Email,
    /// `person.credit_card`.
    CreditCard,
    /// `person.city`.
    City,
    /// `person.state`.
    State,
    /// `date_time` of every kind.
    DateTime,
    /// `extra` of every kind.
    Extra,
    /// `auction.item_name`.
    ItemName,
    /// `auction.description`.
    Description,
    /// `auction.initial_bid`.
    InitialBid,
    /// `auction.reserve`.
    Reserve,
    /// `auction.expires`.
    Expires,
    /// `auction.seller`.
    Seller,
    /// `auction.category`.
    Category,
    /// `bid.auction`.
    Auction,
    /// `bid.bidder`.
    Bidder,
    /// `bid.price`.
    Price,
    /// `bid.channel`.
    Channel,
    /// `bid.url`.
    Url,
}

impl Field {
    /// The field behind a column of a table of this kind.
    pub fn of(kind: Kind, column: &str) -> Option<Field> {
        use Field::*;
        Some(match (kind, column) {
            (Kind::Person | Kind::Auction, "id") => Id,
            (Kind::Person, "name") => Name,
            (Kind::Person, "email_address") => Email,
            (Kind::Person, "credit_card") => CreditCard,
            (Kind::Person, "city") => City,
            (Kind::Person, "state") => State,
            (_, "date_time") => DateTime,
            (_, "extra") => Extra,
            (Kind::Auction, "item_name") => ItemName,
            (Kind::Auction, "description") => Description,
            (Kind::Auction, "initial_bid") => InitialBid,
            (Kind::Auction, "reserve") => Reserve,
            (Kind::Auction, "expires") => Expires,
            (Kind::Auction, "seller") => Seller,
            (Kind::Auction, "category") => Category,
            (Kind::Bid, "auction") => Auction,
            (Kind::Bid, "bidder") => Bidder,
            (Kind::Bid, "price") => Price,
            (Kind::Bid, "channel") => Channel,
            (Kind::Bid, "url") => Url,
            _ => return None,
        })
    }

    fn is_text(self) -> bool {
        use Field::*;
        matches!(self, Name | Email | CreditCard | City | State | Extra | ItemName | Description | Channel | Url)
    }
}

enum Builder {
    Int(Vec<i64>),
    Time(Vec<i64>),
    Text(StringBuilder),
}

/// Builds the requested columns of a batch of events, one event at a time.
pub struct Columns {
    shared: Arc<Shared>,
    fields: Vec<(Field, Builder)>,
    scratch: String,
    rows: usize,
}

impl Columns {
    /// Builders for `fields`, sized for `capacity` rows.
    pub fn new(shared: Arc<Shared>, fields: &[Field], capacity: usize) -> Self {
        let fields = fields
            .iter()
            .map(|f| {
                let b = match f {
                    f if f.is_text() => Builder::Text(StringBuilder::with_capacity(capacity, capacity * 16)),
                    Field::DateTime | Field::Expires => Builder::Time(Vec::with_capacity(capacity)),
                    _ => Builder::Int(Vec::with_capacity(capacity)),
                };
                (*f, b)
            })
            .collect();
        Self { shared, fields, scratch: String::new(), rows: 0 }
    }

    /// Rows added so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Add the event with this id, at (adjusted) event number `n` of `timeline`.
    pub fn push(&mut self, kind: Kind, event_id: i64, n: u64, timeline: &Timeline) {
        self.rows += 1;
        let shared = &*self.shared;
        let scratch = &mut self.scratch;
        for (field, builder) in &mut self.fields {
            match builder {
                Builder::Int(v) => v.push(int_value(shared, *field, event_id)),
                Builder::Time(v) => {
                    let t = timeline.timestamp_ms(n);
                    v.push(match field {
                        Field::Expires => t + timeline.auction_length_ms(n, &mut shared.rng(event_id, tag::EXPIRES)),
                        _ => t,
                    })
                }
                Builder::Text(b) => match text_value(shared, kind, *field, event_id, scratch) {
                    Some(s) => b.append_value(s),
                    None => b.append_value(scratch.as_str()),
                },
            }
        }
    }

    /// The columns built, in the order of the fields; the builders start over, sized as this
    /// batch was (so that the next one does not grow them again from nothing).
    pub fn finish(&mut self) -> Vec<ArrayRef> {
        let rows = std::mem::take(&mut self.rows);
        self.fields
            .iter_mut()
            .map(|(_, b)| -> ArrayRef {
                match b {
                    Builder::Int(v) => Arc::new(Int64Array::from(std::mem::replace(v, Vec::with_capacity(rows)))),
                    Builder::Time(v) => {
                        Arc::new(TimestampMillisecondArray::from(std::mem::replace(v, Vec::with_capacity(rows))))
                    }
                    Builder::Text(b) => {
                        let bytes = b.values_slice().len();
                        Arc::new(std::mem::replace(b, StringBuilder::with_capacity(rows, bytes)).finish())
                    }
                }
            })
            .collect()
    }
}

fn int_value(shared: &Shared, field: Field, event_id: i64) -> i64 {
    match field {
        Field::Id if super::model::kind_of(event_id) == Kind::Person => last_base0_person_id(event_id) + FIRST_ID,
        Field::Id => last_base0_auction_id(event_id) + FIRST_ID,
        Field::InitialBid => price(&mut shared.rng(event_id, tag::INITIAL_BID)),
        Field::Reserve => {
            price(&mut shared.rng(event_id, tag::INITIAL_BID)) + price(&mut shared.rng(event_id, tag::RESERVE))
        }
        Field::Seller => seller(event_id, &mut shared.rng(event_id, tag::SELLER)),
        Field::Category => FIRST_CATEGORY_ID + shared.rng(event_id, tag::CATEGORY).u64(0..NUM_CATEGORIES) as i64,
        Field::Auction => bid_auction(event_id, &mut shared.rng(event_id, tag::AUCTION)),
        Field::Bidder => bidder(event_id, &mut shared.rng(event_id, tag::BIDDER)),
        _ => price(&mut shared.rng(event_id, tag::PRICE)),
    }
}

/// A text value: borrowed from the shared tables (`Some`), or written into `scratch`.
fn text_value<'a>(
    shared: &'a Shared,
    kind: Kind,
    field: Field,
    event_id: i64,
    scratch: &mut String,
) -> Option<&'a str> {
    scratch.clear();
    let rng = |t| shared.rng(event_id, t);
    match field {
        Field::Name => {
            let mut r = rng(tag::NAME);
            scratch.push_str(FIRST_NAMES[r.usize(0..FIRST_NAMES.len())]);
            scratch.push(' ');
            scratch.push_str(LAST_NAMES[r.usize(0..LAST_NAMES.len())]);
            None
        }
        Field::Email => {
            let mut r = rng(tag::EMAIL);
            random_string(&mut r, 7, ' ', scratch);
            scratch.push('@');
            random_string(&mut r, 5, ' ', scratch);
            scratch.push_str(".com");
            None
        }
        Field::CreditCard => {
            let mut r = rng(tag::CARD);
            for i in 0..4 {
                if i > 0 {
                    scratch.push(' ');
                }
                let _ = write!(scratch, "{:04}", r.u32(0..10_000));
            }
            None
        }
        Field::City => Some(CITIES[rng(tag::CITY).usize(0..CITIES.len())]),
        Field::State => Some(STATES[rng(tag::STATE).usize(0..STATES.len())]),
        Field::ItemName => {
            random_string(&mut rng(tag::ITEM), 20, ' ', scratch);
            None
        }
        Field::Description => {
            random_string(&mut rng(tag::DESCRIPTION), 100, ' ', scratch);
            None
        }
        Field::Channel | Field::Url => {
            let mut r = rng(tag::CHANNEL);
            let text = if r.u32(0..HOT_CHANNELS_RATIO) > 0 {
                let i = r.usize(0..HOT_CHANNELS.len());
                if field == Field::Channel {
                    HOT_CHANNELS[i]
                } else {
                    shared.hot_urls[i].as_str()
                }
            } else {
                let (name, url) = &shared.channels[r.usize(0..CHANNELS)];
                if field == Field::Channel {
                    name.as_str()
                } else {
                    url.as_str()
                }
            };
            Some(text)
        }
        _ => Some(extra(shared, kind, event_id, scratch)),
    }
}

/// The `extra` of an event: its size depends on the lengths of the event's other fields.
fn extra<'a>(shared: &'a Shared, kind: Kind, event_id: i64, scratch: &mut String) -> &'a str {
    let mut len = |f: Field| match text_value(shared, kind, f, event_id, scratch) {
        Some(s) => s.len(),
        None => scratch.len(),
    };
    let (avg, current) = match kind {
        Kind::Person => (
            AVG_PERSON,
            8 + len(Field::Name) + len(Field::Email) + len(Field::CreditCard) + len(Field::City) + len(Field::State),
        ),
        Kind::Auction => (AVG_AUCTION, 8 + len(Field::ItemName) + len(Field::Description) + 5 * 8),
        Kind::Bid => (AVG_BID, 32),
    };
    shared.extra(event_id, avg, current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_common::arrow::array::{Array, AsArray};

    #[test]
    fn strings_have_the_nexmark_shapes() {
        let shared = Shared::new(3);
        let t = Timeline::new(0, 10_000, 1, 1);
        let fields = [Field::Name, Field::Email, Field::CreditCard, Field::Extra, Field::City];
        let mut person = Columns::new(Arc::clone(&shared), &fields, 16);
        for e in 0..20 {
            person.push(Kind::Person, e * 50, e as u64 * 50, &t);
        }
        let cols = person.finish();
        for row in 0..20 {
            let name = cols[0].as_string::<i32>().value(row);
            assert!(FIRST_NAMES.iter().any(|f| name.starts_with(f)), "{name}");
            let email = cols[1].as_string::<i32>().value(row);
            assert!(email.ends_with(".com") && email.contains('@'), "{email}");
            let card = cols[2].as_string::<i32>().value(row);
            assert_eq!(card.len(), 19, "{card}");
            let size = 8 + name.len() + email.len() + 19 + cols[4].as_string::<i32>().value(row).len() + 2;
            let extra = cols[3].as_string::<i32>().value(row).len();
            let d = 200 - size;
            assert!(extra + 1 >= d * 8 / 10 && extra <= d * 12 / 10, "extra {extra} pads {size} to about 200");
        }
        let mut bids =
            Columns::new(Arc::clone(&shared), &[Field::Channel, Field::Url, Field::Price, Field::Extra], 1000);
        for e in 0..1000 {
            bids.push(Kind::Bid, e * 50 + 4, e as u64, &t);
        }
        let cols = bids.finish();
        let channel = cols[0].as_string::<i32>();
        let hot = (0..1000).filter(|&i| HOT_CHANNELS.contains(&channel.value(i))).count();
        assert!((430..570).contains(&hot), "half the bids come through a hot channel: {hot}");
        let url = cols[1].as_string::<i32>();
        let with_id = (0..1000).filter(|&i| url.value(i).contains("&channel_id=")).count();
        assert!(with_id > 300 && with_id < 500, "9 in 10 of the other half carry an id: {with_id}");
        let prices = cols[2].as_primitive::<datafusion_common::arrow::datatypes::Int64Type>();
        assert!(prices.values().iter().all(|p| (100..=100_000_000).contains(p)));
        assert!(cols[3].as_string::<i32>().iter().all(|x| (54..82).contains(&x.unwrap().len())));
        assert_eq!(cols[3].null_count(), 0);
    }

    #[test]
    fn a_value_does_not_depend_on_the_other_columns_read() {
        let shared = Shared::new(9);
        let t = Timeline::new(0, 10_000, 1, 1);
        let mut all = Columns::new(Arc::clone(&shared), &[Field::Bidder, Field::Url, Field::Price], 8);
        let mut one = Columns::new(Arc::clone(&shared), &[Field::Price], 8);
        for e in 4..12 {
            all.push(Kind::Bid, e, e as u64, &t);
            one.push(Kind::Bid, e, e as u64, &t);
        }
        assert_eq!(&all.finish()[2], &one.finish()[0]);
        // a different seed gives different prices
        let mut other = Columns::new(Shared::new(10), &[Field::Price], 8);
        let mut same = Columns::new(shared, &[Field::Price], 8);
        for e in 4..12 {
            other.push(Kind::Bid, e, e as u64, &t);
            same.push(Kind::Bid, e, e as u64, &t);
        }
        assert_ne!(&other.finish()[0], &same.finish()[0]);
    }
}
