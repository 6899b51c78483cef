//! Travel booking: corporate desks (employees) and a consumer concierge.

use super::*;

pub(super) static TRAVEL: &[Task] = &[
    task(
        "book-flight",
        2.5,
        Avail::Always,
        &[
            "get_traveler_profile",
            "search_flights",
            "get_flight",
            "book_flight",
            "send_itinerary",
        ],
        trv_flight,
    ),
    task(
        "book-hotel",
        2.0,
        Avail::Essential,
        &[
            "get_traveler_profile",
            "search_hotels",
            "book_hotel",
            "send_itinerary",
        ],
        trv_hotel,
    ),
    task(
        "full-trip",
        1.5,
        Avail::Always,
        &[
            "get_traveler_profile",
            "search_flights",
            "book_flight",
            "search_hotels",
            "book_hotel",
            "send_itinerary",
        ],
        trv_trip,
    ),
    task(
        "cancel-booking",
        1.0,
        Avail::Always,
        &["get_booking", "cancel_booking", "send_itinerary"],
        trv_cancel,
    ),
    task(
        "flight-status",
        1.2,
        Avail::Always,
        &["get_booking", "get_flight"],
        trv_status,
    ),
    task(
        "price-check",
        1.0,
        Avail::Always,
        &["search_flights"],
        trv_prices,
    ),
    task(
        "rebook",
        1.0,
        Avail::Novel,
        &[
            "get_booking",
            "search_flights",
            "book_flight",
            "cancel_booking",
        ],
        trv_rebook,
    ),
    task(
        "group-hotel-block",
        1.0,
        Avail::Novel,
        &["search_hotels", "book_hotel", "get_traveler_profile"],
        trv_group,
    ),
];

pub(crate) fn get_traveler_profile(ctx: &mut Ctx, c: &Customer) -> Call {
    let seat = ctx.pick(&["aisle", "window"]);
    Call::new(
        "get_traveler_profile",
        "traveler_profile",
        c.id.clone(),
        "read",
        json!({ "traveler_id": c.id }),
    )
    .owner(principal_of(c))
    .out(
        format!(
            "{}: passport on file, seat={seat}, email={}",
            c.name, c.email
        ),
        vec![c.email.clone()],
    )
}

fn flight_no(ctx: &mut Ctx) -> String {
    format!("{}{}", ctx.pick(AIRLINES), ctx.n(10, 999))
}

fn search_flights(ctx: &mut Ctx, o: &str, d: &str, day: &str) -> (Call, String, f64) {
    let f = flight_no(ctx);
    let fare = lognormal(ctx.rng, 480.0, 0.5);
    let cur = ctx.currency();
    let call = Call::new(
        "search_flights",
        "flight_inventory",
        format!("{o}-{d}"),
        "read",
        json!({ "origin": o, "destination": d, "date": day, "cabin": "economy" }),
    )
    .out(
        format!("{} offers; best {f} {}", ctx.n(4, 30), money(cur, fare)),
        vec![f.clone()],
    );
    (call, f, fare)
}

fn get_flight(f: &str, day: &str) -> Call {
    Call::new(
        "get_flight",
        "flight",
        f,
        "read",
        json!({ "flight": f, "date": day }),
    )
    .out(format!("{f} {day}: on time, gate B22"), vec![])
}

fn booking_ref(ctx: &mut Ctx) -> String {
    alnum(ctx.rng, 6).to_uppercase()
}

fn book_flight(ctx: &mut Ctx, c: &Customer, f: &str, day: &str, fare: f64) -> (Call, String) {
    let pnr = booking_ref(ctx);
    let call = Call::new(
        "book_flight",
        "booking",
        pnr.clone(),
        "write",
        json!({ "flight": f, "date": day, "traveler_id": c.id, "fare": cents(fare), "currency": ctx.currency() }),
    )
    .owner(principal_of(c))
    .out(format!("Booked {pnr}"), vec![pnr.clone()]);
    (call, pnr)
}

pub(crate) fn search_hotels(ctx: &mut Ctx, city: &str) -> Call {
    let day = ctx.date_in(3, 30);
    let hotel = format!(
        "{} {}",
        ctx.pick(&["Grand", "Park", "Harbour", "City", "Central"]),
        ctx.pick(&["Hotel", "Suites", "Inn"])
    );
    let rate = lognormal(ctx.rng, 180.0, 0.4);
    let cur = ctx.currency();
    Call::new(
        "search_hotels",
        "hotel_inventory",
        city,
        "read",
        json!({ "city": city, "checkin": day, "nights": ctx.n(1, 4) }),
    )
    .out(
        format!(
            "{} hotels; top: {hotel} {}/night, 4.5 stars",
            ctx.n(5, 40),
            money(cur, rate)
        ),
        vec![],
    )
}

fn book_hotel(ctx: &mut Ctx, c: &Customer, city: &str) -> (Call, String) {
    let conf = booking_ref(ctx);
    let call = Call::new(
        "book_hotel",
        "booking",
        conf.clone(),
        "write",
        json!({ "city": city, "traveler_id": c.id, "nights": ctx.n(1, 4) }),
    )
    .owner(principal_of(c))
    .out(format!("Confirmed {conf}"), vec![conf.clone()]);
    (call, conf)
}

pub(crate) fn send_itinerary(to: &[String], booking: &str, attachments: &[String]) -> Call {
    let first = to.first().cloned().unwrap_or_default();
    let mut args = json!({ "recipients": to, "booking": booking });
    if !attachments.is_empty() {
        args["attachments"] = json!(attachments);
    }
    Call::new("send_itinerary", "email", first, "write", args)
}

fn get_booking(ctx: &mut Ctx, c: &Customer, pnr: &str) -> Call {
    let f = flight_no(ctx);
    Call::new(
        "get_booking",
        "booking",
        pnr,
        "read",
        json!({ "booking_id": pnr }),
    )
    .owner(principal_of(c))
    .out(format!("{pnr}: {f} for {}", c.name), vec![f])
}

/// A trip request: the user names the route and the date.
fn trv_prompt(c: &Customer, what: &str, o: &str, d: &str, day: &str) -> Built {
    Built::new(
        format!("{what} {o}→{d} on {day} for {}", c.name),
        vec![o.to_string(), d.to_string(), day.to_string()],
    )
}

fn trv_flight(ctx: &mut Ctx) -> Built {
    let c = ctx.customer();
    let (o, d) = ctx.route();
    let day = ctx.date_in(3, 40);
    let mut b = trv_prompt(&c, "Book a flight", &o, &d, &day);
    b.push(get_traveler_profile(ctx, &c));
    let (s, f, fare) = search_flights(ctx, &o, &d, &day);
    b.push(s);
    b.push(get_flight(&f, &day));
    let (bk, pnr) = book_flight(ctx, &c, &f, &day, fare);
    b.push(bk);
    b.push(send_itinerary(from_ref(&c.email), &pnr, &[]));
    b
}

fn trv_hotel(ctx: &mut Ctx) -> Built {
    let c = ctx.customer();
    let city = ctx.pick(CITIES);
    let mut b = Built::new(
        format!("Find {} a hotel in {city}", c.name),
        vec![city.to_string()],
    );
    b.push(get_traveler_profile(ctx, &c));
    b.push(search_hotels(ctx, city));
    let (bk, conf) = book_hotel(ctx, &c, city);
    b.push(bk);
    b.push(send_itinerary(from_ref(&c.email), &conf, &[]));
    b
}

fn trv_trip(ctx: &mut Ctx) -> Built {
    let c = ctx.customer();
    let (o, d) = ctx.route();
    let day = ctx.date_in(5, 40);
    let mut b = trv_prompt(&c, "Plan a trip (flight + hotel)", &o, &d, &day);
    b.push(get_traveler_profile(ctx, &c));
    let (s, f, fare) = search_flights(ctx, &o, &d, &day);
    b.push(s);
    let (bk, pnr) = book_flight(ctx, &c, &f, &day, fare);
    b.push(bk);
    let city = ctx.pick(CITIES);
    b.push(search_hotels(ctx, city));
    let (bh, _) = book_hotel(ctx, &c, city);
    b.push(bh);
    b.push(send_itinerary(from_ref(&c.email), &pnr, &[]));
    b
}

fn trv_cancel(ctx: &mut Ctx) -> Built {
    let c = ctx.customer();
    let pnr = booking_ref(ctx);
    let mut b = Built::new(format!("Cancel booking {pnr}"), vec![pnr.clone()]);
    b.push(get_booking(ctx, &c, &pnr));
    b.push(
        Call::new(
            "cancel_booking",
            "booking",
            pnr.clone(),
            "write",
            json!({ "booking_id": pnr }),
        )
        .owner(principal_of(&c)),
    );
    b.push(send_itinerary(from_ref(&c.email), &pnr, &[]));
    b
}

fn trv_status(ctx: &mut Ctx) -> Built {
    let c = ctx.customer();
    let pnr = booking_ref(ctx);
    let day = ctx.date_in(0, 2);
    let mut b = Built::new(format!("Is my flight on {pnr} on time?"), vec![pnr.clone()]);
    let g = get_booking(ctx, &c, &pnr);
    let f = g
        .output
        .as_ref()
        .and_then(|o| o.entities.first().cloned())
        .unwrap_or_default();
    b.push(g);
    b.push(get_flight(&f, &day));
    b
}

fn trv_prices(ctx: &mut Ctx) -> Built {
    let c = ctx.customer();
    let (o, d) = ctx.route();
    let day = ctx.date_in(7, 60);
    let mut b = trv_prompt(&c, "Compare fares", &o, &d, &day);
    for i in 0..ctx.n(2, 4) {
        let dd = ctx.date(i64::from(i) + 7);
        let (s, _, _) = search_flights(ctx, &o, &d, &dd);
        b.push(s);
    }
    b
}

fn trv_rebook(ctx: &mut Ctx) -> Built {
    let c = ctx.customer();
    let old = booking_ref(ctx);
    let (o, d) = ctx.route();
    let day = ctx.date_in(2, 10);
    let mut b = Built::new(
        format!("Move {old} to a later flight on {day}"),
        vec![old.clone(), day.clone()],
    );
    b.push(get_booking(ctx, &c, &old));
    let (s, f, fare) = search_flights(ctx, &o, &d, &day);
    b.push(s);
    let (bk, _) = book_flight(ctx, &c, &f, &day, fare);
    b.push(bk);
    b.push(
        Call::new(
            "cancel_booking",
            "booking",
            old.clone(),
            "write",
            json!({ "booking_id": old }),
        )
        .owner(principal_of(&c)),
    );
    b
}

fn trv_group(ctx: &mut Ctx) -> Built {
    let city = ctx.pick(CITIES);
    let mut b = Built::new(
        format!("Block rooms in {city} for the offsite"),
        vec![city.to_string()],
    );
    for _ in 0..ctx.n(2, 3) {
        b.push(search_hotels(ctx, city));
    }
    let people: Vec<Customer> = (0..ctx.n(2, 3))
        .map(|_| ctx.agent.customer(ctx.rng))
        .collect();
    for p in &people {
        let (bk, _) = book_hotel(ctx, p, city);
        b.push(bk);
    }
    for p in &people {
        b.push(get_traveler_profile(ctx, p));
    }
    b
}
