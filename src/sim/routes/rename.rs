//! `PATCH /cvms/{id}/name`: renaming a CVM in place (204, no body).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::Res;
use crate::sim::Sim;
use crate::sim::edge::Body;
use crate::sim::requests::{RenameRequest, need};

pub async fn rename(State(sim): State<Sim>, Path(id): Path<String>, Body(req): Body<RenameRequest>) -> Res {
    let name = need(req.name, "name")?;
    sim.change(|w| {
        let seq = w.cvm(&id)?.seq;
        w.rename(seq, &name)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
}
