//! `prism_aws::stack`'s template reader, pinned on small templates: what it resolves
//! (parameters, mappings, conditions, `Globals`, intrinsic functions), what it skips, and the
//! errors naming what it cannot resolve; and schedule rates. `template.rs` checks the real
//! template against the code with it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::time::Duration;

use prism_aws::stack::{EnvSource, QueueSpec, StackTemplate, rate_interval};

fn queue<'a>(queues: &'a [QueueSpec], id: &str) -> &'a QueueSpec {
    queues
        .iter()
        .find(|q| q.logical_id == id)
        .unwrap_or_else(|| panic!("{id} is not a queue of the template"))
}

const SMALL: &str = r#"
Parameters:
  Timeout:
    Type: Number
    Default: 60
    AllowedValues: [60, 120]
  Topic:
    Type: String
    Default: ""
Mappings:
  Visibility:
    "60": {Seconds: 360}
    "120": {Seconds: 720}
Conditions:
  HasTopic: !Not [!Equals [!Ref Topic, ""]]
  NoTopic: {"Fn::Equals": [{"Ref": "Topic"}, ""]}
Globals:
  Function:
    Timeout: 30
    Environment:
      Variables:
        SHARED: shared
        OVERRIDDEN: global
        QUEUE: !Ref Work
Resources:
  Api:
    Type: AWS::ApiGateway::RestApi
    Properties:
      Body: !Transform {Name: "AWS::Include", Parameters: {Location: !Sub "s3://${AWS::Region}"}}
      Name: !Join ["-", [!Ref "AWS::StackName", api]]
  Dlq:
    Type: AWS::SQS::Queue
    Properties:
      MessageRetentionPeriod: 1209600
  Work:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: !FindInMap [Visibility, !Ref Timeout, Seconds]
      DelaySeconds: !If [HasTopic, 5, !Ref "AWS::NoValue"]
      RedrivePolicy:
        deadLetterTargetArn: {"Fn::GetAtt": [Dlq, Arn]}
        maxReceiveCount: 4
  Only:
    Type: AWS::SQS::Queue
    Condition: HasTopic
  Worker:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: worker
    Properties:
      Timeout: !Ref Timeout
      Environment:
        Variables:
          OVERRIDDEN: own
          DLQ_ARN: !GetAtt Dlq.Arn
          MAYBE: !If [NoTopic, !Ref "AWS::NoValue", x]
      Events:
        Tick:
          Type: Schedule
          Properties:
            Schedule: rate(5 minutes)
        Feed:
          Type: SQS
          Properties:
            Queue: !GetAtt Work.Arn
            BatchSize: 1
            FunctionResponseTypes: [ReportBatchItemFailures]
"#;

#[test]
fn the_reader_resolves_what_it_reads_and_skips_the_rest() {
    let t = StackTemplate::parse(SMALL).unwrap();
    let queues = t.queues().unwrap();
    let ids: Vec<&str> = queues.iter().map(|q| q.logical_id.as_str()).collect();
    assert_eq!(ids, ["Dlq", "Work"], "the conditional queue does not exist");
    let work = queue(&queues, "Work");
    assert_eq!(work.visibility_seconds, 360);
    assert_eq!(work.delay_seconds, 0, "AWS::NoValue leaves SQS's default");
    assert_eq!(work.retention_seconds, 345_600);
    let redrive = work.redrive.as_ref().unwrap();
    assert_eq!(
        (
            redrive.dead_letter_queue.as_str(),
            redrive.max_receive_count
        ),
        ("Dlq", 4)
    );

    let worker = t.function("worker").unwrap();
    assert_eq!(worker.logical_id, "Worker");
    assert_eq!(worker.timeout_seconds, 60, "own Timeout over Globals");
    assert_eq!(worker.memory_mb, 128, "Lambda's default");
    assert_eq!(
        worker.environment,
        vec![
            ("SHARED".into(), EnvSource::Literal("shared".into())),
            ("OVERRIDDEN".into(), EnvSource::Literal("own".into())),
            ("QUEUE".into(), EnvSource::Ref("Work".into())),
            ("DLQ_ARN".into(), EnvSource::Arn("Dlq".into())),
        ]
    );

    let mappings = t.queue_mappings().unwrap();
    assert_eq!(mappings.len(), 1);
    assert_eq!(mappings[0].logical_id, "WorkerFeed");
    assert_eq!(
        (mappings[0].function.as_str(), mappings[0].queue.as_str()),
        ("Worker", "Work")
    );
    assert_eq!(mappings[0].batch_size, 1);
    assert!(mappings[0].report_batch_item_failures);
    assert_eq!(mappings[0].maximum_concurrency, None);

    let rules = t.schedule_rules().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].interval(), Some(Duration::from_secs(300)));
}

#[test]
fn parameters_change_what_depends_on_them_and_are_checked() {
    let t = StackTemplate::parse(SMALL)
        .unwrap()
        .with_parameter("Timeout", "120")
        .unwrap()
        .with_parameter("Topic", "arn:topic")
        .unwrap();
    let queues = t.queues().unwrap();
    assert_eq!(queue(&queues, "Work").visibility_seconds, 720);
    assert_eq!(queue(&queues, "Work").delay_seconds, 5);
    assert!(queues.iter().any(|q| q.logical_id == "Only"));
    let worker = t.function("Worker").unwrap();
    assert_eq!(worker.timeout_seconds, 120);
    assert!(worker.environment.iter().any(|(n, _)| n == "MAYBE"));

    let base = StackTemplate::parse(SMALL).unwrap();
    assert!(base.with_parameter("Timeout", "90").is_err(), "not allowed");
    assert!(base.with_parameter("Nope", "1").is_err());
}

#[test]
fn what_cannot_be_resolved_is_an_error_naming_the_property() {
    let yaml = SMALL.replace(
        "VisibilityTimeout: !FindInMap [Visibility, !Ref Timeout, Seconds]",
        "VisibilityTimeout: !FindInMap [Visibility, \"90\", Seconds]",
    );
    let error = StackTemplate::parse(&yaml).unwrap().queues().unwrap_err();
    assert!(
        error
            .to_string()
            .contains("Resources.Work.Properties.VisibilityTimeout"),
        "{error}"
    );
    let yaml = SMALL.replace(
        "deadLetterTargetArn: {\"Fn::GetAtt\": [Dlq, Arn]}",
        "deadLetterTargetArn: !GetAtt Missing.Arn",
    );
    assert!(StackTemplate::parse(&yaml).unwrap().queues().is_err());
    let yaml = SMALL.replace("MessageRetentionPeriod: 1209600", "FifoQueue: true");
    assert!(StackTemplate::parse(&yaml).unwrap().queues().is_err());
}

#[test]
fn rates_parse_and_crons_do_not() {
    assert_eq!(
        rate_interval("rate(1 minute)"),
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        rate_interval("rate(2 hours)"),
        Some(Duration::from_secs(7200))
    );
    assert_eq!(
        rate_interval("rate(1 day)"),
        Some(Duration::from_secs(86_400))
    );
    assert_eq!(rate_interval("rate(0 minutes)"), None);
    assert_eq!(rate_interval("cron(0 12 * * ? *)"), None);
}
