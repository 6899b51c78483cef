//! Word lists the world is made from. Partner, new-partner, attacker and
//! consumer domain lists are disjoint, so "a domain the agent never
//! contacted" holds by construction.

pub(crate) const FIRST_NAMES: &[&str] = &[
    "ana", "ben", "carla", "dev", "elena", "farid", "greta", "hiro", "ines", "jonas", "kemal",
    "lena", "mateo", "nina", "omar", "priya", "quentin", "rosa", "sven", "tara", "uma", "victor",
    "wen", "yusuf", "zoe", "liam", "noah", "emma", "mia", "lucas", "sofia", "arjun", "chen",
    "fatima", "kofi", "lea", "marco", "olga", "pablo", "sara", "tomas", "aisha", "bruno", "dana",
];

pub(crate) const LAST_NAMES: &[&str] = &[
    "alvarez",
    "becker",
    "chen",
    "dubois",
    "eriksen",
    "fischer",
    "garcia",
    "hansen",
    "ito",
    "jansen",
    "kowalski",
    "lindqvist",
    "moreau",
    "nakamura",
    "okafor",
    "patel",
    "quinn",
    "rossi",
    "schmidt",
    "tanaka",
    "ueda",
    "varga",
    "weber",
    "xu",
    "yilmaz",
    "zimmer",
    "novak",
    "silva",
    "kim",
    "murphy",
    "olsen",
    "park",
    "reyes",
    "stone",
    "khan",
    "meyer",
    "rahman",
    "costa",
    "berg",
    "horvat",
];

/// Partners agents know from the start (Microsoft's fictitious companies).
pub(crate) const PARTNER_DOMAINS: &[&str] = &[
    "northwind-traders.com",
    "contoso.com",
    "fabrikam.net",
    "tailspin-toys.com",
    "woodgrove-bank.com",
    "adventure-works.com",
    "litware.io",
    "proseware.com",
    "lucerne-publishing.com",
    "wingtip-toys.com",
    "fourthcoffee.com",
    "alpine-ski-house.com",
    "blue-yonder-airlines.com",
    "coho-winery.com",
    "humongous-insurance.com",
    "trey-research.net",
    "wide-world-importers.com",
    "datum-corp.com",
    "relecloud.com",
    "margies-travel.com",
];

/// Partners that appear later: legitimate new business (drift).
pub(crate) const NEW_PARTNER_DOMAINS: &[&str] = &[
    "bellows-college.edu",
    "munson-pickles.com",
    "vanarsdel.com",
    "consolidated-messenger.com",
    "southridge-video.com",
    "nod-publishers.com",
    "cpandl.com",
    "lamna-healthcare.com",
    "best-for-you-organics.com",
    "city-power-light.com",
    "first-up-consultants.com",
    "graphic-design-institute.com",
];

/// Where members of the public have their mail.
pub(crate) const CONSUMER_DOMAINS: &[&str] = &[
    "gmail.com",
    "outlook.com",
    "yahoo.com",
    "icloud.com",
    "gmx.de",
    "web.de",
    "hotmail.co.uk",
    "orange.fr",
    "proton.me",
    "free.fr",
];

/// Parts of attacker-registered domains (never used by benign traffic).
pub(crate) const ATTACKER_WORDS_A: &[&str] = &[
    "secure", "docs", "files", "cloud", "data", "mailbox", "sync", "backup", "share", "vault",
    "transfer", "portal", "verify", "audit", "invoice", "payroll",
];
pub(crate) const ATTACKER_WORDS_B: &[&str] = &[
    "relay", "drop", "hub", "box", "link", "center", "store", "desk", "point", "gate", "check",
    "archive",
];
pub(crate) const ATTACKER_TLDS: &[&str] = &["io", "net", "cc", "xyz", "top", "site", "co", "info"];
pub(crate) const ATTACKER_LOCALS: &[&str] = &[
    "archive",
    "records",
    "audit",
    "billing",
    "it-helpdesk",
    "exports",
    "compliance",
    "finance-team",
    "backup",
    "ceo.office",
];

pub(crate) const MAIL_TOPICS: &[&str] = &[
    "Q4 budget",
    "contract renewal",
    "project kickoff",
    "invoice 2291",
    "onboarding plan",
    "pricing update",
    "board prep",
    "hiring loop",
    "vendor review",
    "launch checklist",
    "travel plans",
    "SLA report",
    "roadmap draft",
    "partner summit",
    "security review",
];

pub(crate) const DOCS: &[&str] = &[
    "q3-board-deck.pdf",
    "pricing-2026.xlsx",
    "onboarding-guide.docx",
    "security-policy.pdf",
    "roadmap-h1.pptx",
    "contract-template.docx",
    "sla-terms.pdf",
    "expense-policy.pdf",
    "brand-guidelines.pdf",
    "incident-runbook.md",
    "api-reference.md",
    "release-notes-4.2.md",
    "vendor-list.xlsx",
    "okr-2026.docx",
];

pub(crate) const SENSITIVE_DOCS: &[&str] = &[
    "payroll-2026-10.xlsx",
    "customer-export.csv",
    "board-minutes-confidential.pdf",
    "acquisition-targets.xlsx",
    "salary-bands-2027.xlsx",
    "api-keys-backup.txt",
];

pub(crate) const CHANNELS: &[&str] = &[
    "#general",
    "#eng-platform",
    "#sales",
    "#support",
    "#random",
    "#incidents",
    "#deploys",
    "#design",
    "#finance",
    "#marketing",
    "#announcements",
    "#data-team",
    "#product",
    "#security",
    "#standup",
    "#customer-success",
];

pub(crate) const SERVICES: &[&str] = &[
    "payments-api",
    "checkout",
    "auth-service",
    "search",
    "notifications",
    "billing-worker",
    "web-frontend",
    "ledger",
    "etl-runner",
    "feature-store",
    "gateway",
    "recommender",
    "inventory",
    "reporting",
];

pub(crate) const SCHEMAS: &[(&str, &[&str])] = &[
    (
        "sales",
        &["orders", "order_items", "customers", "refunds", "pipeline"],
    ),
    (
        "finance",
        &["ledger", "invoices", "payouts", "fx_rates", "budgets"],
    ),
    (
        "marketing",
        &["campaigns", "signups", "attribution", "web_sessions"],
    ),
    ("ops", &["shipments", "warehouses", "incidents", "sla"]),
    (
        "product",
        &["events", "feature_flags", "experiments", "users"],
    ),
    (
        "risk",
        &["chargebacks", "fraud_scores", "kyc_checks", "limits"],
    ),
];

/// Schemas that only show up in the test period ("explore a new schema").
pub(crate) const NEW_SCHEMAS: &[(&str, &[&str])] = &[
    (
        "partner_feed",
        &[
            "listings",
            "price_history",
            "stock_levels",
            "returns",
            "ratings",
        ],
    ),
    (
        "support_ml",
        &["ticket_embeddings", "intents", "deflections", "csat"],
    ),
];

pub(crate) const AIRPORTS: &[&str] = &[
    "FRA", "JFK", "LHR", "CDG", "SFO", "SIN", "NRT", "AMS", "BOS", "ORD", "MUC", "BCN", "DXB",
    "SYD", "YYZ", "ZRH", "MAD", "HKG", "SEA", "LIS",
];

pub(crate) const CITIES: &[&str] = &[
    "New York",
    "London",
    "Paris",
    "San Francisco",
    "Singapore",
    "Tokyo",
    "Amsterdam",
    "Boston",
    "Chicago",
    "Munich",
    "Barcelona",
    "Zurich",
    "Toronto",
    "Lisbon",
];

pub(crate) const AIRLINES: &[&str] = &["LH", "BA", "AF", "UA", "SQ", "KL", "DL", "LX", "IB"];

pub(crate) const SUPPLIERS: &[&str] = &[
    "Northwind Traders",
    "Contoso Ltd",
    "Fabrikam Inc",
    "Tailspin Toys",
    "Litware Inc",
    "Proseware",
    "Lucerne Publishing",
    "Wingtip Toys",
    "Fourth Coffee",
    "Coho Winery",
    "Trey Research",
    "Wide World Importers",
    "A Datum Corp",
    "Relecloud",
    "Alpine Ski House",
    "Blue Yonder Airlines",
];

pub(crate) const MERCHANTS: &[&str] = &[
    "Stadtwerke Nord",
    "Vodafone",
    "City Power & Light",
    "Allianz Versicherung",
    "Telekom",
    "Netflix",
    "Hausverwaltung Meyer",
    "Fitness First",
    "Stadtbibliothek",
    "Deutsche Bahn",
    "Amazon Payments",
    "Kita Sonnenschein",
];

pub(crate) const TICKET_SUBJECTS: &[&str] = &[
    "Cannot log in after password reset",
    "Charged twice this month",
    "Export to CSV fails",
    "How do I change my plan?",
    "App crashes on upload",
    "Refund for cancelled order",
    "Invoice address is wrong",
    "2FA code never arrives",
    "Missing items in delivery",
    "Account locked",
];

pub(crate) const KB_QUERIES: &[&str] = &[
    "reset password sso",
    "duplicate charge policy",
    "csv export limits",
    "plan change proration",
    "upload size limit",
    "refund window",
    "2fa sms delivery",
    "delivery claims",
];
