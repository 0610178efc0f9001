//! `tokenbroker consent ...`: the requests of unknown apps, answered from the terminal.

use std::path::PathBuf;

use tokenbroker_client::{ConsentAnswer, Notification, SubscribeParams};

use super::connect;
use crate::args::{AnswerArg, ConsentCmd};
use crate::failure::Failure;
use crate::output;

pub fn run(socket: &Option<PathBuf>, cmd: ConsentCmd) -> Result<(), Failure> {
    match cmd {
        ConsentCmd::List(j) => {
            let list = connect(socket)?.list_consents()?;
            if j.json {
                output::json(&list);
                return Ok(());
            }
            if list.is_empty() {
                println!("no requests waiting");
            }
            for r in list {
                println!(
                    "{}\t{}\tpid {}\taccount {}\tscopes {}",
                    r.id,
                    r.exe,
                    output::pid(r.pid),
                    r.account,
                    r.scopes.join(" ")
                );
            }
            Ok(())
        }
        ConsentCmd::Answer { id, answer } => {
            let answer = match answer {
                AnswerArg::AllowOnce => ConsentAnswer::AllowOnce,
                AnswerArg::AllowAlways => ConsentAnswer::AllowAlways,
                AnswerArg::Deny => ConsentAnswer::Deny,
            };
            connect(socket)?.answer_consent(id, answer)?;
            println!("answered request {id}");
            Ok(())
        }
        ConsentCmd::Watch => {
            let mut sub = connect(socket)?.subscribe(&SubscribeParams {
                consent_agent: true,
            })?;
            eprintln!("tokenbroker: waiting for consent requests; answer with `tokenbroker consent answer ID allow-once|allow-always|deny`");
            loop {
                if let Notification::ConsentRequired { request } = sub.next_event()? {
                    output::json_line(&request);
                }
            }
        }
    }
}
