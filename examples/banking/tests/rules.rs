//! The banking rules as given / when / then: no store, no runtime.

use banking::{Account, AccountCommand, AccountError, AccountEvent, Transfer, TransferCommand};
use strata_toolkit::testing::given;

fn opened(account: &str) -> AccountEvent {
    AccountEvent::AccountOpened { account: account.into(), owner: account.to_uppercase() }
}

fn deposited(account: &str, amount: i64) -> AccountEvent {
    AccountEvent::MoneyDeposited { account: account.into(), amount, transfer: None }
}

fn withdrawn(account: &str, amount: i64) -> AccountEvent {
    AccountEvent::MoneyWithdrawn { account: account.into(), amount, transfer: None }
}

#[test]
fn an_account_opens_once() {
    given::<Account>([]).when(AccountCommand::Open { account: "a".into(), owner: "A".into() }).then([opened("a")]);
    given::<Account>([opened("a")])
        .when(AccountCommand::Open { account: "a".into(), owner: "A".into() })
        .then_rejected(|error| *error == AccountError::AlreadyOpen);
}

#[test]
fn deposits_and_withdrawals_move_the_balance() {
    let state = given::<Account>([opened("a"), deposited("a", 1_000)])
        .when(AccountCommand::Withdraw { account: "a".into(), amount: 400 })
        .then([withdrawn("a", 400)]);
    assert_eq!(state.balance, 600);
}

#[test]
fn an_overdraft_is_refused() {
    given::<Account>([opened("a"), deposited("a", 1_000), withdrawn("a", 300)])
        .when(AccountCommand::Withdraw { account: "a".into(), amount: 701 })
        .then_rejected(|error| *error == AccountError::Overdraft { balance: 700, amount: 701 });
    given::<Account>([opened("a"), deposited("a", 1_000)])
        .when(AccountCommand::Withdraw { account: "a".into(), amount: 1_000 })
        .then([withdrawn("a", 1_000)]);
}

#[test]
fn amounts_must_be_positive_and_the_account_open() {
    given::<Account>([opened("a")])
        .when(AccountCommand::Deposit { account: "a".into(), amount: 0 })
        .then_rejected_with("must be positive");
    given::<Account>([])
        .when(AccountCommand::Deposit { account: "a".into(), amount: 5 })
        .then_rejected(|error| *error == AccountError::NotOpen);
}

#[test]
fn only_an_empty_account_closes() {
    given::<Account>([opened("a"), deposited("a", 1)])
        .when(AccountCommand::Close { account: "a".into() })
        .then_rejected(|error| *error == AccountError::NotEmpty { balance: 1 });
    let state = given::<Account>([opened("a")])
        .when(AccountCommand::Close { account: "a".into() })
        .then([AccountEvent::AccountClosed { account: "a".into() }]);
    assert!(state.closed);
}

#[test]
fn a_transfer_moves_money_between_two_open_accounts() {
    let command = TransferCommand { transfer: "t".into(), from: "a".into(), to: "b".into(), amount: 250 };
    let state = given::<Transfer>([opened("a"), opened("b"), deposited("a", 300)]).when(command.clone()).then([
        AccountEvent::MoneyWithdrawn { account: "a".into(), amount: 250, transfer: Some("t".into()) },
        AccountEvent::MoneyDeposited { account: "b".into(), amount: 250, transfer: Some("t".into()) },
    ]);
    assert_eq!((state.accounts["a"].balance, state.accounts["b"].balance), (50, 250));
    given::<Transfer>([opened("a"), opened("b"), deposited("a", 200)])
        .when(command.clone())
        .then_rejected(|error| *error == AccountError::Overdraft { balance: 200, amount: 250 });
    given::<Transfer>([opened("a"), deposited("a", 300)])
        .when(command)
        .then_rejected(|error| *error == AccountError::NotOpen);
}

#[test]
fn a_closed_account_takes_no_more_commands() {
    given::<Account>([opened("a"), AccountEvent::AccountClosed { account: "a".into() }])
        .when(AccountCommand::Deposit { account: "a".into(), amount: 5 })
        .then_terminal();
}

#[test]
fn version_1_amounts_parse_as_cents() {
    use banking::parse_decimal_cents as parse;
    assert_eq!(parse("12.50"), Ok(1_250));
    assert_eq!(parse("12.5"), Ok(1_250));
    assert_eq!(parse("7"), Ok(700));
    assert_eq!(parse("0.07"), Ok(7));
    for bad in ["", ".5", "1.", "1.234", "-1.50", "1.-5", "1.+5", "+1", "1,5", "99999999999999999999"] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
    assert!(parse("92233720368547759").is_err(), "an overflow is an error");
}
