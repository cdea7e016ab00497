//! Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs: their pod
//! template becomes pods, so it is judged as a pod before injection (see `pod`), where
//! it is written: a bad Deployment is refused at `kubectl apply`, not later by its
//! ReplicaSet.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::pod::{self, Template};
use crate::policy::judge::{Context, Findings};
use crate::policy::spec::{Object, null_default};

/// The `spec` of Deployment, StatefulSet, DaemonSet, ReplicaSet and Job.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WorkloadSpec<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    template: Template<'a>,
}

/// The `spec` of a CronJob.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct CronJobSpec<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    job_template: JobTemplate<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct JobTemplate<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    spec: WorkloadSpec<'a>,
}

/// A workload whose template is `spec.template`.
pub(crate) fn judge(object: &RawValue, cx: &Context<'_>, out: &mut Findings<'_>) {
    let Some(o) = out.decoded::<Object<WorkloadSpec<'_>>>(object.get()) else {
        return;
    };
    pod::judge_template(&o.spec.template, "spec.template.", cx, out);
}

/// A CronJob: its template is `spec.jobTemplate.spec.template`.
pub(crate) fn judge_cron_job(object: &RawValue, cx: &Context<'_>, out: &mut Findings<'_>) {
    let Some(o) = out.decoded::<Object<CronJobSpec<'_>>>(object.get()) else {
        return;
    };
    let template = &o.spec.job_template.spec.template;
    pod::judge_template(template, "spec.jobTemplate.spec.template.", cx, out);
}
