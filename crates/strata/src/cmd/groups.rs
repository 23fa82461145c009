//! `strata groups …`: consumer groups, over the HTTP API (`/v1/groups`).

use super::events::{FilterArgs, print_event};
use super::target::{Target, encode};
use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List the groups with their checkpoint and lag.
    List,
    /// Create a group over a stream or the (filtered) global log.
    Create(CreateArgs),
    /// Change a group's settings (its source and start stay).
    Update(UpdateArgs),
    /// A group's checkpoint, lag, deliveries in flight, parked events and consumers.
    Info { name: String },
    /// Delete a group with its checkpoint and parked events.
    Delete { name: String },
    /// Fetch events as a consumer, print them and ack them (until none come within the wait, or
    /// `--count` events; `--follow` keeps going).
    Consume(ConsumeArgs),
    /// Ack deliveries by id.
    Ack { name: String, delivery_ids: Vec<String> },
    /// Hand deliveries back: `--action retry|park|skip`.
    Nack {
        name: String,
        #[arg(long)]
        action: String,
        delivery_ids: Vec<String>,
    },
    /// List the parked events.
    Parked { name: String },
    /// Deliver the parked events again.
    ReplayParked { name: String },
}

#[derive(Debug, Args)]
pub struct SettingsArgs {
    /// Deliveries not yet acked, across consumers.
    #[arg(long)]
    pub max_in_flight: Option<u64>,
    /// A delivery not acked within this is delivered again.
    #[arg(long)]
    pub ack_timeout_ms: Option<u64>,
    /// Deliveries after the first before an event is parked.
    #[arg(long)]
    pub max_retries: Option<u64>,
    /// `round_robin` or `pinned` (one stream's events to one consumer, in order).
    #[arg(long)]
    pub strategy: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub name: String,
    /// The stream to consume (else the global log, filtered by the options below).
    #[arg(long)]
    pub stream: Option<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// `start`, `end`, or a position (log) / revision (stream).
    #[arg(long, default_value = "start")]
    pub from: String,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    pub name: String,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    pub name: String,
    /// This consumer's name.
    #[arg(long, default_value = "cli")]
    pub consumer: String,
    /// Events per fetch.
    #[arg(long, default_value_t = 100)]
    pub max: u64,
    /// How long a fetch waits for events.
    #[arg(long, default_value_t = 1000)]
    pub wait_ms: u64,
    /// Stop after this many events.
    #[arg(long)]
    pub count: Option<u64>,
    /// Print without acking (the events come back after the ack timeout).
    #[arg(long)]
    pub no_ack: bool,
    /// Keep fetching when nothing comes.
    #[arg(long)]
    pub follow: bool,
}

fn list_of(text: &Option<String>) -> Vec<String> {
    text.iter().flat_map(|t| t.split(',')).filter(|t| !t.is_empty()).map(str::to_owned).collect()
}

fn settings_json(settings: &SettingsArgs) -> Value {
    let mut out = Map::new();
    for (name, value) in [
        ("max_in_flight", settings.max_in_flight),
        ("ack_timeout_ms", settings.ack_timeout_ms),
        ("max_retries", settings.max_retries),
    ] {
        if let Some(value) = value {
            out.insert(name.to_owned(), json!(value));
        }
    }
    if let Some(strategy) = &settings.strategy {
        out.insert("strategy".to_owned(), json!(strategy));
    }
    Value::Object(out)
}

fn print_group(group: &Value) {
    let source = match &group["source"] {
        Value::Object(source) if source.contains_key("stream") => format!("stream {}", source["stream"]),
        other => format!("all {}", other["all"]),
    };
    println!(
        "{:<24} {source}  checkpoint {}  lag {} events / {:.1} s  in flight {}  parked {}",
        group["name"].as_str().unwrap_or("?"),
        group["checkpoint"],
        group["lag_events"],
        group["lag_seconds"].as_f64().unwrap_or(0.0),
        group["in_flight"],
        group["parked"],
    );
}

pub async fn run(target: &Target, command: GroupsCommand, json: bool) -> Result<()> {
    let path = |name: &str, rest: &str| format!("/v1/groups/{}{rest}", encode(name));
    let show = |value: &Value| {
        if json {
            println!("{value}");
        } else {
            print_group(value);
        }
    };
    match command {
        GroupsCommand::List => {
            let answer = target.get("/v1/groups").await?;
            if json {
                println!("{answer}");
            } else {
                for group in answer["groups"].as_array().into_iter().flatten() {
                    print_group(group);
                }
            }
        }
        GroupsCommand::Create(args) => {
            let source = match &args.stream {
                Some(stream) => json!({ "stream": stream }),
                None => json!({ "all": {
                    "category": args.filter.category, "types": list_of(&args.filter.types),
                    "stream_prefix": args.filter.stream_prefix, "tags": list_of(&args.filter.tags),
                } }),
            };
            let source = strip_nulls(source);
            let from = args.from.parse::<u64>().map_or(json!(args.from), |n| json!(n));
            let body = json!({ "source": source, "from": from, "settings": settings_json(&args.settings) });
            let answer = target.send("PUT", &path(&args.name, ""), Some(body.to_string().into_bytes())).await?.ok()?;
            show(&answer);
        }
        GroupsCommand::Update(args) => {
            let current = target.get(&path(&args.name, "")).await?;
            let mut settings = current["settings"].clone();
            if let (Value::Object(settings), Value::Object(changes)) = (&mut settings, settings_json(&args.settings)) {
                settings.extend(changes);
            }
            let body = json!({ "source": current["source"], "from": current["from"], "settings": settings });
            let answer = target.send("PUT", &path(&args.name, ""), Some(body.to_string().into_bytes())).await?.ok()?;
            show(&answer);
        }
        GroupsCommand::Info { name } => {
            let group = target.get(&path(&name, "")).await?;
            if json {
                println!("{group}");
            } else {
                print_group(&group);
                println!("settings {}", group["settings"]);
                for consumer in group["consumers"].as_array().into_iter().flatten() {
                    println!("consumer {} holds {}", consumer["consumer"], consumer["in_flight"]);
                }
            }
        }
        GroupsCommand::Delete { name } => {
            target.send("DELETE", &path(&name, ""), None).await?.ok()?;
            if !json {
                println!("deleted {name}");
            }
        }
        GroupsCommand::Consume(args) => consume(target, &args, json).await?,
        GroupsCommand::Ack { name, delivery_ids } => {
            let body = json!({ "delivery_ids": delivery_ids });
            let answer = target.send("POST", &path(&name, "/ack"), Some(body.to_string().into_bytes())).await?.ok()?;
            println!("{answer}");
        }
        GroupsCommand::Nack { name, action, delivery_ids } => {
            let body = json!({ "delivery_ids": delivery_ids, "action": action });
            let answer = target.send("POST", &path(&name, "/nack"), Some(body.to_string().into_bytes())).await?.ok()?;
            println!("{answer}");
        }
        GroupsCommand::Parked { name } => {
            let answer = target.get(&path(&name, "/parked")).await?;
            if json {
                println!("{answer}");
            } else {
                for parked in answer["parked"].as_array().into_iter().flatten() {
                    println!("{:>10}  {} attempts  {}", parked["position"], parked["attempts"], parked["reason"]);
                }
            }
        }
        GroupsCommand::ReplayParked { name } => {
            let answer = target.send("POST", &path(&name, "/replay-parked"), None).await?.ok()?;
            println!("{answer}");
        }
    }
    Ok(())
}

fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()))
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

async fn consume(target: &Target, args: &ConsumeArgs, json: bool) -> Result<()> {
    let path = format!("/v1/groups/{}", encode(&args.name));
    let mut handled = 0u64;
    loop {
        let want = args.count.map_or(args.max, |count| (count - handled).min(args.max));
        if want == 0 {
            return Ok(());
        }
        let body = json!({ "consumer": args.consumer, "max": want, "wait_ms": args.wait_ms });
        let answer = target.send("POST", &format!("{path}/fetch"), Some(body.to_string().into_bytes())).await?.ok()?;
        let deliveries = answer["deliveries"].as_array().cloned().unwrap_or_default();
        if deliveries.is_empty() {
            if args.follow {
                continue;
            }
            return Ok(());
        }
        let mut ids = Vec::with_capacity(deliveries.len());
        for delivery in &deliveries {
            if json {
                println!("{delivery}");
            } else {
                print_event(&delivery["event"], false);
            }
            ids.push(delivery["delivery_id"].clone());
        }
        if !args.no_ack {
            let body = json!({ "delivery_ids": ids });
            let answer =
                target.send("POST", &format!("{path}/ack"), Some(body.to_string().into_bytes())).await?.ok()?;
            if answer["unknown"].as_array().is_some_and(|unknown| !unknown.is_empty()) {
                bail!("the group no longer expected some acks (they timed out and went to another consumer): {answer}");
            }
        }
        handled += deliveries.len() as u64;
    }
}
