//! The banking example: accounts as event-sourced aggregates on Strata.
//!
//! - [`Account`]: a [`Decider`] per account stream (`account-42`): open, deposit, withdraw (an
//!   overdraft is refused), close.
//! - [`Transfer`]: a [`DcbDecider`] whose consistency boundary is both accounts' events (the query
//!   `tags: account:A` or `account:B`); it withdraws from one and deposits into the other in one
//!   atomic append to both streams.
//! - [`codec`]: `MoneyDeposited` is at schema version 2 (amounts in cents); version 1 stored the
//!   amount as a decimal string, and an upcaster turns those into the current shape on read.
//! - [`BalancesSqlite`] and [`BalancesPostgres`]: the balance read model, exactly-once.

use serde::{Deserialize, Serialize};
use strata_core::{EventType, Query, QueryItem, RecordedEvent, StreamId, Tag};
use strata_storage::Filter;
use strata_toolkit::event::{EventSchema, adjacent};
use strata_toolkit::projection::postgres::PostgresProjection;
use strata_toolkit::projection::sqlite::SqliteProjection;
use strata_toolkit::projection::{ProjectionError, Tables};
use strata_toolkit::{Codec, DcbDecider, Decider, DomainEvent};

/// Amounts are integer cents.
pub type Cents = i64;

/// What happens to an account. Amounts are positive cents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum AccountEvent {
    AccountOpened {
        account: String,
        owner: String,
    },
    MoneyDeposited {
        account: String,
        amount: Cents,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transfer: Option<String>,
    },
    MoneyWithdrawn {
        account: String,
        amount: Cents,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transfer: Option<String>,
    },
    AccountClosed {
        account: String,
    },
}

impl AccountEvent {
    pub fn account(&self) -> &str {
        match self {
            AccountEvent::AccountOpened { account, .. }
            | AccountEvent::MoneyDeposited { account, .. }
            | AccountEvent::MoneyWithdrawn { account, .. }
            | AccountEvent::AccountClosed { account } => account,
        }
    }
}

impl DomainEvent for AccountEvent {
    const SCHEMAS: &'static [EventSchema] = &[
        EventSchema { name: "AccountOpened", version: 1 },
        EventSchema { name: "MoneyDeposited", version: 2 },
        EventSchema { name: "MoneyWithdrawn", version: 1 },
        EventSchema { name: "AccountClosed", version: 1 },
    ];

    fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::AccountOpened { .. } => "AccountOpened",
            AccountEvent::MoneyDeposited { .. } => "MoneyDeposited",
            AccountEvent::MoneyWithdrawn { .. } => "MoneyWithdrawn",
            AccountEvent::AccountClosed { .. } => "AccountClosed",
        }
    }

    fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        adjacent::to_json(self)
    }

    fn from_json(event_type: &str, data: serde_json::Value) -> Result<Self, serde_json::Error> {
        adjacent::from_json(event_type, data)
    }

    fn tags(&self) -> Vec<String> {
        vec![account_tag(self.account())]
    }
}

pub fn account_tag(account: &str) -> String {
    format!("account:{account}")
}

/// The stream of an account: `account-{id}`.
pub fn account_stream(account: &str) -> StreamId {
    StreamId::new(format!("account-{account}")).expect("account ids make valid stream ids")
}

/// The codec with the history of the event types: `MoneyDeposited` v1 stored `{"account", "amount":
/// "12.50"}` (a decimal string of currency units); v2 stores integer cents.
pub fn codec() -> Codec<AccountEvent> {
    Codec::new().upcast("MoneyDeposited", 1, |mut data| {
        let amount = data.get("amount").and_then(serde_json::Value::as_str).ok_or("amount is not a string")?;
        let cents = parse_decimal_cents(amount)?;
        data["amount"] = serde_json::Value::from(cents);
        Ok(data)
    })
}

/// `"12.50"` → 1250: an unsigned decimal with at most two decimals (what version 1 wrote).
pub fn parse_decimal_cents(text: &str) -> Result<Cents, String> {
    let invalid = || format!("{text:?} is not an amount (digits, optionally a point and one or two digits)");
    let (units, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if units.is_empty()
        || !digits(units)
        || !digits(fraction)
        || fraction.len() > 2
        || (text.contains('.') && fraction.is_empty())
    {
        return Err(invalid());
    }
    let units: i64 = units.parse().map_err(|_| invalid())?;
    let cents: i64 = format!("{fraction:0<2}").parse().map_err(|_| invalid())?;
    units.checked_mul(100).and_then(|u| u.checked_add(cents)).ok_or_else(|| format!("{text:?} is too large an amount"))
}

/// An account's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    pub opened: bool,
    pub closed: bool,
    pub balance: Cents,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCommand {
    Open { account: String, owner: String },
    Deposit { account: String, amount: Cents },
    Withdraw { account: String, amount: Cents },
    Close { account: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountError {
    AlreadyOpen,
    NotOpen,
    NotPositive { amount: Cents },
    Overdraft { balance: Cents, amount: Cents },
    NotEmpty { balance: Cents },
}

impl std::fmt::Display for AccountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccountError::AlreadyOpen => write!(f, "the account is already open"),
            AccountError::NotOpen => write!(f, "the account is not open"),
            AccountError::NotPositive { amount } => write!(f, "amounts must be positive, not {amount}"),
            AccountError::Overdraft { balance, amount } => {
                write!(f, "insufficient funds: withdrawing {amount} from a balance of {balance}")
            }
            AccountError::NotEmpty { balance } => write!(f, "the account still holds {balance}; empty it first"),
        }
    }
}

/// The account aggregate.
#[derive(Debug)]
pub struct Account;

impl Decider for Account {
    type Command = AccountCommand;
    type Event = AccountEvent;
    type State = AccountState;
    type Error = AccountError;

    fn initial_state() -> AccountState {
        AccountState::default()
    }

    fn decide(command: &AccountCommand, state: &AccountState) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::Open { account, owner } => {
                if state.opened {
                    return Err(AccountError::AlreadyOpen);
                }
                Ok(vec![AccountEvent::AccountOpened { account: account.clone(), owner: owner.clone() }])
            }
            AccountCommand::Deposit { account, amount } => {
                check_open_and_positive(state, *amount)?;
                Ok(vec![AccountEvent::MoneyDeposited { account: account.clone(), amount: *amount, transfer: None }])
            }
            AccountCommand::Withdraw { account, amount } => {
                check_open_and_positive(state, *amount)?;
                if state.balance < *amount {
                    return Err(AccountError::Overdraft { balance: state.balance, amount: *amount });
                }
                Ok(vec![AccountEvent::MoneyWithdrawn { account: account.clone(), amount: *amount, transfer: None }])
            }
            AccountCommand::Close { account } => {
                if !state.opened {
                    return Err(AccountError::NotOpen);
                }
                if state.balance != 0 {
                    return Err(AccountError::NotEmpty { balance: state.balance });
                }
                Ok(vec![AccountEvent::AccountClosed { account: account.clone() }])
            }
        }
    }

    fn evolve(mut state: AccountState, event: &AccountEvent) -> AccountState {
        match event {
            AccountEvent::AccountOpened { .. } => state.opened = true,
            AccountEvent::MoneyDeposited { amount, .. } => state.balance += amount,
            AccountEvent::MoneyWithdrawn { amount, .. } => state.balance -= amount,
            AccountEvent::AccountClosed { .. } => state.closed = true,
        }
        state
    }

    fn is_terminal(state: &AccountState) -> bool {
        state.closed
    }
}

fn check_open_and_positive(state: &AccountState, amount: Cents) -> Result<(), AccountError> {
    if !state.opened || state.closed {
        return Err(AccountError::NotOpen);
    }
    if amount <= 0 {
        return Err(AccountError::NotPositive { amount });
    }
    Ok(())
}

/// A transfer between two accounts, decided over both accounts' events.
#[derive(Debug)]
pub struct Transfer;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferCommand {
    pub transfer: String,
    pub from: String,
    pub to: String,
    pub amount: Cents,
}

/// Both accounts' states.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferState {
    pub accounts: std::collections::BTreeMap<String, AccountState>,
}

impl Decider for Transfer {
    type Command = TransferCommand;
    type Event = AccountEvent;
    type State = TransferState;
    type Error = AccountError;

    fn initial_state() -> TransferState {
        TransferState::default()
    }

    fn decide(command: &TransferCommand, state: &TransferState) -> Result<Vec<AccountEvent>, AccountError> {
        let none = AccountState::default();
        let from = state.accounts.get(&command.from).unwrap_or(&none);
        let to = state.accounts.get(&command.to).unwrap_or(&none);
        check_open_and_positive(from, command.amount)?;
        check_open_and_positive(to, command.amount)?;
        if from.balance < command.amount {
            return Err(AccountError::Overdraft { balance: from.balance, amount: command.amount });
        }
        let transfer = Some(command.transfer.clone());
        Ok(vec![
            AccountEvent::MoneyWithdrawn {
                account: command.from.clone(),
                amount: command.amount,
                transfer: transfer.clone(),
            },
            AccountEvent::MoneyDeposited { account: command.to.clone(), amount: command.amount, transfer },
        ])
    }

    fn evolve(mut state: TransferState, event: &AccountEvent) -> TransferState {
        let account = state.accounts.remove(event.account()).unwrap_or_default();
        state.accounts.insert(event.account().to_owned(), Account::evolve(account, event));
        state
    }
}

impl DcbDecider for Transfer {
    fn query(command: &TransferCommand) -> Query {
        let item = |account: &str| QueryItem {
            types: Vec::new(),
            tags: vec![Tag::new(account_tag(account)).expect("a valid tag")],
        };
        Query::new(vec![item(&command.from), item(&command.to)])
    }

    fn stream(event: &AccountEvent) -> StreamId {
        account_stream(event.account())
    }
}

/// The balance read model's events.
pub fn balance_filter() -> Filter {
    let types = ["MoneyDeposited", "MoneyWithdrawn"].map(|name| EventType::new(name).expect("a valid type"));
    Filter { category: Some("account".to_owned()), event_types: types.to_vec(), ..Filter::default() }
}

/// An event's change to its account's balance (decoded through the codec, so v1 deposits count);
/// `None` for events that do not move money.
pub fn balance_delta(
    codec: &Codec<AccountEvent>,
    recorded: &RecordedEvent,
) -> Result<Option<(String, Cents)>, ProjectionError> {
    let event = codec
        .decode(recorded)
        .map_err(|error| ProjectionError::Handler { position: recorded.position, reason: error.to_string() })?;
    Ok(match event {
        AccountEvent::MoneyDeposited { account, amount, .. } => Some((account, amount)),
        AccountEvent::MoneyWithdrawn { account, amount, .. } => Some((account, -amount)),
        _ => None,
    })
}

/// Aborts the process once this many events were written into the read model — installed as the
/// target's before-checkpoint hook, so it lands between a batch's read-model write and its
/// checkpoint (the exactly-once kill test's crash point).
#[derive(Debug, Clone, Copy)]
pub struct CrashAfter(pub u64);

impl CrashAfter {
    pub fn hook(mut self) -> impl FnMut(&[RecordedEvent]) + Send + 'static {
        move |events| {
            if self.0 <= events.len() as u64 {
                eprintln!("banking: crashing between the read-model write and the checkpoint, as asked");
                std::process::abort();
            }
            self.0 -= events.len() as u64;
        }
    }
}

/// The balances read model in SQLite: `balances(account, balance, events)`.
#[derive(Debug)]
pub struct BalancesSqlite {
    pub version: u32,
    pub codec: Codec<AccountEvent>,
}

impl BalancesSqlite {
    pub fn new(version: u32) -> Self {
        Self { version, codec: codec() }
    }
}

impl SqliteProjection for BalancesSqlite {
    fn name(&self) -> &str {
        "balances"
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn filter(&self) -> Filter {
        balance_filter()
    }

    fn tables(&self) -> Vec<&'static str> {
        vec!["balances"]
    }

    fn setup(&self, tx: &rusqlite::Transaction<'_>, tables: &Tables) -> rusqlite::Result<()> {
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {} (account TEXT PRIMARY KEY, balance INTEGER NOT NULL, events INTEGER NOT NULL)",
            tables.get("balances")
        ))
    }

    fn apply(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut upsert = tx.prepare_cached(&format!(
            "INSERT INTO {} (account, balance, events) VALUES (?1, ?2, 1)
             ON CONFLICT (account) DO UPDATE SET balance = balance + excluded.balance, events = events + 1",
            tables.get("balances")
        ))?;
        for recorded in events {
            if let Some((account, delta)) = balance_delta(&self.codec, recorded)? {
                upsert.execute(rusqlite::params![account, delta])?;
            }
        }
        Ok(())
    }
}

/// The balances read model in PostgreSQL: `balances(account, balance, events)`, one upsert per
/// batch (the deltas summed per account, sent as arrays).
#[derive(Debug)]
pub struct BalancesPostgres {
    pub version: u32,
    pub codec: Codec<AccountEvent>,
}

impl BalancesPostgres {
    pub fn new(version: u32) -> Self {
        Self { version, codec: codec() }
    }
}

impl PostgresProjection for BalancesPostgres {
    fn name(&self) -> &str {
        "balances"
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn filter(&self) -> Filter {
        balance_filter()
    }

    fn tables(&self) -> Vec<&'static str> {
        vec!["balances"]
    }

    async fn setup(&self, tx: &tokio_postgres::Transaction<'_>, tables: &Tables) -> Result<(), tokio_postgres::Error> {
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} (account TEXT PRIMARY KEY, balance BIGINT NOT NULL, events BIGINT NOT NULL)",
            tables.get("balances")
        ))
        .await
    }

    async fn apply(
        &mut self,
        tx: &tokio_postgres::Transaction<'_>,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut accounts: Vec<String> = Vec::new();
        let mut deltas: Vec<i64> = Vec::new();
        let mut counts: Vec<i64> = Vec::new();
        let mut per_account: std::collections::BTreeMap<String, (i64, i64)> = std::collections::BTreeMap::new();
        for recorded in events {
            let Some((account, delta)) = balance_delta(&self.codec, recorded)? else { continue };
            let entry = per_account.entry(account).or_default();
            entry.0 += delta;
            entry.1 += 1;
        }
        for (account, (delta, count)) in per_account {
            accounts.push(account);
            deltas.push(delta);
            counts.push(count);
        }
        let statement = format!(
            "INSERT INTO {table} (account, balance, events)
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[])
             ON CONFLICT (account) DO UPDATE SET balance = {table}.balance + excluded.balance,
                                                 events = {table}.events + excluded.events",
            table = tables.get("balances")
        );
        tx.execute(&statement, &[&accounts, &deltas, &counts]).await?;
        Ok(())
    }
}

/// The balances a fold of `events` gives (the truth the read models are compared with).
pub fn fold_balances(
    codec: &Codec<AccountEvent>,
    events: &[RecordedEvent],
) -> Result<std::collections::BTreeMap<String, (Cents, i64)>, ProjectionError> {
    let filter = balance_filter();
    let mut balances = std::collections::BTreeMap::new();
    for recorded in events.iter().filter(|event| filter.matches(event)) {
        if let Some((account, delta)) = balance_delta(codec, recorded)? {
            let entry: &mut (Cents, i64) = balances.entry(account).or_default();
            entry.0 += delta;
            entry.1 += 1;
        }
    }
    Ok(balances)
}
