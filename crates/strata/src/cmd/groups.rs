//! `strata groups …`: consumer groups, over the HTTP API (`/v1/groups`).

use super::events::{FilterArgs, print_event};
use super::target::{Target, encode, json_body};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use strata_wire::{
    AckRequest, AckResponse, AllFilter, FetchRequest, FetchResponse, Group, GroupList, GroupSettings, GroupSource,
    NackRequest, ParkedList, PutGroupRequest, ReadFrom, Replayed,
};

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

/// A name of the API's JSON (`round_robin`, `park`, …) as its `strata_wire` type.
fn named<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).with_context(|| format!("--{what} {text:?}"))
}

/// The settings given; the rest stay unset (the server's defaults, or the group's on an update).
fn settings(settings: &SettingsArgs) -> Result<GroupSettings> {
    Ok(GroupSettings {
        max_in_flight: settings.max_in_flight,
        ack_timeout_ms: settings.ack_timeout_ms,
        max_retries: settings.max_retries,
        strategy: settings.strategy.as_deref().map(|strategy| named(strategy, "strategy")).transpose()?,
    })
}

fn print_group(group: &Group) {
    let source = match &group.source {
        GroupSource::Stream(stream) => format!("stream {}", serde_json::Value::from(stream.as_str())),
        GroupSource::All(filter) => format!("all {}", serde_json::to_string(filter).expect("renders")),
    };
    let checkpoint = group.checkpoint.map_or("null".to_owned(), |checkpoint| checkpoint.to_string());
    println!(
        "{:<24} {source}  checkpoint {checkpoint}  lag {} events / {:.1} s  in flight {}  parked {}",
        group.name, group.lag_events, group.lag_seconds, group.in_flight, group.parked,
    );
}

fn print_json(value: &impl serde::Serialize) {
    println!("{}", serde_json::to_string(value).expect("answers render"));
}

pub async fn run(target: &Target, command: GroupsCommand, json: bool) -> Result<()> {
    let path = |name: &str, rest: &str| format!("/v1/groups/{}{rest}", encode(name));
    let show = |group: &Group| {
        if json {
            print_json(group);
        } else {
            print_group(group);
        }
    };
    match command {
        GroupsCommand::List => {
            let answer: GroupList = target.get("/v1/groups").await?;
            if json {
                print_json(&answer);
            } else {
                answer.groups.iter().for_each(print_group);
            }
        }
        GroupsCommand::Create(args) => {
            let source = match &args.stream {
                Some(stream) => GroupSource::Stream(stream.clone()),
                None => GroupSource::All(AllFilter {
                    category: args.filter.category.clone(),
                    types: list_of(&args.filter.types),
                    stream_prefix: args.filter.stream_prefix.clone(),
                    tags: list_of(&args.filter.tags),
                }),
            };
            let from = match args.from.parse::<u64>() {
                Ok(at) => ReadFrom::At(at),
                Err(_) => ReadFrom::from_name(&args.from)
                    .with_context(|| format!("--from must be start, end or a number, not {:?}", args.from))?,
            };
            let body = PutGroupRequest { source, from: Some(from), settings: Some(settings(&args.settings)?) };
            let answer: Group = target.send("PUT", &path(&args.name, ""), json_body(&body)).await?.ok()?;
            show(&answer);
        }
        GroupsCommand::Update(args) => {
            let current: Group = target.get(&path(&args.name, "")).await?;
            let changes = settings(&args.settings)?;
            let settings = GroupSettings {
                max_in_flight: changes.max_in_flight.or(current.settings.max_in_flight),
                ack_timeout_ms: changes.ack_timeout_ms.or(current.settings.ack_timeout_ms),
                max_retries: changes.max_retries.or(current.settings.max_retries),
                strategy: changes.strategy.or(current.settings.strategy),
            };
            let body = PutGroupRequest { source: current.source, from: Some(current.from), settings: Some(settings) };
            let answer: Group = target.send("PUT", &path(&args.name, ""), json_body(&body)).await?.ok()?;
            show(&answer);
        }
        GroupsCommand::Info { name } => {
            let group: Group = target.get(&path(&name, "")).await?;
            if json {
                print_json(&group);
            } else {
                print_group(&group);
                println!("settings {}", serde_json::to_string(&group.settings)?);
                for consumer in &group.consumers {
                    println!(
                        "consumer {} holds {}",
                        serde_json::Value::from(consumer.consumer.as_str()),
                        consumer.in_flight
                    );
                }
            }
        }
        GroupsCommand::Delete { name } => {
            let _: strata_wire::GroupDeleted = target.send("DELETE", &path(&name, ""), None).await?.ok()?;
            if !json {
                println!("deleted {name}");
            }
        }
        GroupsCommand::Consume(args) => consume(target, &args, json).await?,
        GroupsCommand::Ack { name, delivery_ids } => {
            let body = AckRequest { delivery_ids };
            let answer: AckResponse = target.send("POST", &path(&name, "/ack"), json_body(&body)).await?.ok()?;
            print_json(&answer);
        }
        GroupsCommand::Nack { name, action, delivery_ids } => {
            let body = NackRequest { delivery_ids, action: named(&action, "action")? };
            let answer: AckResponse = target.send("POST", &path(&name, "/nack"), json_body(&body)).await?.ok()?;
            print_json(&answer);
        }
        GroupsCommand::Parked { name } => {
            let answer: ParkedList = target.get(&path(&name, "/parked")).await?;
            if json {
                print_json(&answer);
            } else {
                for parked in &answer.parked {
                    let reason = serde_json::Value::from(parked.reason.as_str());
                    println!("{:>10}  {} attempts  {reason}", parked.position, parked.attempts);
                }
            }
        }
        GroupsCommand::ReplayParked { name } => {
            let answer: Replayed = target.send("POST", &path(&name, "/replay-parked"), None).await?.ok()?;
            print_json(&answer);
        }
    }
    Ok(())
}

async fn consume(target: &Target, args: &ConsumeArgs, json: bool) -> Result<()> {
    let path = format!("/v1/groups/{}", encode(&args.name));
    let mut handled = 0u64;
    loop {
        let want = args.count.map_or(args.max, |count| (count - handled).min(args.max));
        if want == 0 {
            return Ok(());
        }
        let body = FetchRequest { consumer: args.consumer.clone(), max: Some(want), wait_ms: Some(args.wait_ms) };
        let answer: FetchResponse = target.send("POST", &format!("{path}/fetch"), json_body(&body)).await?.ok()?;
        let deliveries = answer.deliveries;
        if deliveries.is_empty() {
            if args.follow {
                continue;
            }
            return Ok(());
        }
        let mut ids = Vec::with_capacity(deliveries.len());
        for delivery in &deliveries {
            if json {
                print_json(delivery);
            } else {
                print_event(&delivery.event, false);
            }
            ids.push(delivery.delivery_id.clone());
        }
        if !args.no_ack {
            let body = AckRequest { delivery_ids: ids };
            let answer: AckResponse = target.send("POST", &format!("{path}/ack"), json_body(&body)).await?.ok()?;
            if !answer.unknown.is_empty() {
                let answer = serde_json::to_string(&answer)?;
                bail!("the group no longer expected some acks (they timed out and went to another consumer): {answer}");
            }
        }
        handled += deliveries.len() as u64;
    }
}
