"""ServerStack and ClientStack, synthesized in process (cdk-nag included): what each resource is allowed."""

from __future__ import annotations

import json
import tarfile

import pytest
from aws_cdk.assertions import Match

from stacks.bundle.builder import BUNDLE_NAME, ENTRY_POINT
from tests.cdk_helpers import THREE_CLIENTS, configured_bundle, resources, statements, synthesize

pytestmark = pytest.mark.slow
SERVER_ACCOUNT, CLIENT_ACCOUNT = "111111111111", "222222222222"


@pytest.fixture(scope="module")
def default(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("cdk-default"))


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("cdk-three"), clients=THREE_CLIENTS)


@pytest.fixture(scope="module")
def client(default):
    return default.clients["ClientStack"]


def _all_templates(synthesized):
    return [synthesized.server, *synthesized.clients.values()]


# --- stacks and their order -------------------------------------------------------------------------

def test_one_client_gives_server_stack_and_client_stack(default):
    assert sorted(default.clients) == ["ClientStack"]
    assert default.server_stack.account == SERVER_ACCOUNT and default.clients and default.client_stacks["ClientStack"].account == CLIENT_ACCOUNT


def test_several_clients_give_one_stack_each_and_the_server_deploys_after_all(three):
    assert sorted(three.clients) == ["ClientStack-hospital-c", "ClientStack-insurer-a", "ClientStack-insurer-b"]
    dependencies = {d.node.id for d in three.server_stack.dependencies}
    assert dependencies == set(three.clients)
    accounts = {name: stack.account for name, stack in three.client_stacks.items()}
    assert accounts == {"ClientStack-insurer-a": "222222222222", "ClientStack-insurer-b": "333333333333", "ClientStack-hospital-c": "444444444444"}


# --- network ----------------------------------------------------------------------------------------

def test_vpcs_are_private_only_with_no_internet_or_nat_gateway(three):
    for template in _all_templates(three):
        template.resource_count_is("AWS::EC2::InternetGateway", 0)
        template.resource_count_is("AWS::EC2::NatGateway", 0)
        template.resource_count_is("AWS::EC2::Subnet", 2)
        for subnet in resources(template, "AWS::EC2::Subnet").values():
            assert subnet["Properties"]["MapPublicIpOnLaunch"] is False
        for route in resources(template, "AWS::EC2::Route").values():
            assert route["Properties"]["DestinationCidrBlock"] != "0.0.0.0/0"
            assert "VpcPeeringConnectionId" in route["Properties"]


def test_every_vpc_has_flow_logs_of_all_traffic_into_an_encrypted_log_group(three):
    for template in _all_templates(three):
        template.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"})
        template.has_resource_properties("AWS::Logs::LogGroup", {"KmsKeyId": Match.any_value(), "RetentionInDays": 365})


def test_endpoints_for_s3_sagemaker_sts_logs_and_ssm_with_private_dns(three):
    for template in _all_templates(three):
        endpoints = resources(template, "AWS::EC2::VPCEndpoint").values()
        gateways = [e for e in endpoints if e["Properties"].get("VpcEndpointType") == "Gateway"]
        interfaces = [e["Properties"] for e in endpoints if e["Properties"].get("VpcEndpointType") == "Interface"]
        assert len(gateways) == 1 and "s3" in json.dumps(gateways[0]["Properties"]["ServiceName"])
        names = {json.dumps(p["ServiceName"]).split(".")[-1].strip('"') for p in interfaces}
        assert {"api", "sts", "logs", "ssm"} <= names
        assert all(p["PrivateDnsEnabled"] is True for p in interfaces)


def test_the_s3_endpoint_only_reaches_buckets_of_its_own_account(default):
    for template, account in ((default.server, SERVER_ACCOUNT), (default.clients["ClientStack"], CLIENT_ACCOUNT)):
        gateway = next(e for e in resources(template, "AWS::EC2::VPCEndpoint").values() if e["Properties"].get("VpcEndpointType") == "Gateway")
        own, packages = gateway["Properties"]["PolicyDocument"]["Statement"]
        assert own["Action"] == "s3:*" and own["Resource"] == "*"
        assert own["Condition"] == {"StringEquals": {"s3:ResourceAccount": account}}
        assert packages["Action"] == "s3:GetObject" and packages["Resource"] == "arn:aws:s3:::al2023-repos-us-east-1-de612dc2/*"


def _ingress(template):
    inline = [rule for sg in resources(template, "AWS::EC2::SecurityGroup").values() for rule in sg["Properties"].get("SecurityGroupIngress", [])]
    return inline + [r["Properties"] for r in resources(template, "AWS::EC2::SecurityGroupIngress").values()]


def test_the_servers_flower_port_admits_exactly_the_client_cidrs(three):
    notebook_sg = next(lid for lid in resources(three.server, "AWS::EC2::SecurityGroup") if lid.startswith("NotebookSecurityGroup"))
    rules = resources(three.server, "AWS::EC2::SecurityGroup")[notebook_sg]["Properties"]["SecurityGroupIngress"]
    assert sorted((r["CidrIp"], r["FromPort"], r["ToPort"]) for r in rules) == sorted((c["vpc_cidr"], 9092, 9092) for c in THREE_CLIENTS)
    assert all(r.get("CidrIp") != "0.0.0.0/0" for r in _ingress(three.server))


def test_a_training_job_reaches_only_the_servers_flower_port_and_its_own_endpoints(client):
    groups = resources(client, "AWS::EC2::SecurityGroup")
    training = next(lid for lid in groups if lid.startswith("TrainingSecurityGroup"))
    inline = groups[training]["Properties"]["SecurityGroupEgress"]
    assert inline == [{"CidrIp": "10.0.0.0/16", "Description": "Flower Fleet API on the server (TLS)", "FromPort": 9092, "IpProtocol": "tcp", "ToPort": 9092}]
    egress = [r["Properties"] for r in resources(client, "AWS::EC2::SecurityGroupEgress").values() if r["Properties"]["GroupId"]["Fn::GetAtt"][0] == training]
    destinations = sorted(("endpoints" if "DestinationSecurityGroupId" in r else "s3-prefix-list", r["FromPort"]) for r in egress)
    assert destinations == [("endpoints", 443), ("s3-prefix-list", 443)]
    assert not [r for r in _ingress(client) if r.get("GroupId", {}).get("Fn::GetAtt", [None])[0] == training]


def test_interface_endpoints_admit_https_only_from_the_vpcs_own_security_groups(client):
    for rule in _ingress(client):
        if "SourceSecurityGroupId" in rule:
            assert rule["FromPort"] == rule["ToPort"] == 443
        assert rule.get("CidrIp") not in ("0.0.0.0/0",)


# --- peering ----------------------------------------------------------------------------------------

def test_the_server_requests_peering_with_each_client_through_its_accepter_role(three):
    connections = [r["Properties"] for r in resources(three.server, "AWS::EC2::VPCPeeringConnection").values()]
    assert sorted(c["PeerOwnerId"] for c in connections) == ["222222222222", "333333333333", "444444444444"]
    for connection in connections:
        assert connection["PeerRoleArn"] == f"arn:aws:iam::{connection['PeerOwnerId']}:role/FL-peering-accepter"
        assert connection["PeerRegion"] == "us-east-1"


def test_routes_exist_on_both_sides_of_every_peering(three):
    server_routes = [r["Properties"] for r in resources(three.server, "AWS::EC2::Route").values()]
    for spec in THREE_CLIENTS:
        assert len([r for r in server_routes if r["DestinationCidrBlock"] == spec["vpc_cidr"]]) == 2  # one per server route table
    client_routes = [r["Properties"] for lid, r in resources(three.server, "Custom::AWS").items() if "ClientRoute" in lid]
    assert len(client_routes) == 2 * len(THREE_CLIENTS)
    for route in client_routes:
        create, update, delete = (json.dumps(route[key]) for key in ("Create", "Update", "Delete"))
        assert '\\"action\\":\\"createRoute\\"' in create and '\\"action\\":\\"replaceRoute\\"' in update and '\\"action\\":\\"deleteRoute\\"' in delete
        assert '10.0.0.0/16' in create and "FL-peering-routes" in create
        assert '\\"physicalResourceId\\":{\\"id\\":\\"fl-route-' in create  # fixed: an update never deletes the route
        assert 'ignoreErrorCodesMatching' in delete and 'InvalidRoute' in delete and 'InvalidRoute' not in create  # a route already gone does not block a delete


def test_the_client_accepter_role_only_accepts_peerings_into_its_vpc_from_the_server_account(client):
    role = next(r for r in resources(client, "AWS::IAM::Role").values() if r["Properties"].get("RoleName") == "FL-peering-accepter")
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{SERVER_ACCOUNT}:root"}
    accept = {s["Sid"]: s for s in statements(client) if s["Action"] == "ec2:AcceptVpcPeeringConnection"}
    assert set(accept) == {"AcceptIntoThisVpcOnly", "AcceptOnlyFromTheServerAccount"}
    vpc = accept["AcceptIntoThisVpcOnly"]
    assert "Condition" not in vpc  # the peering condition keys do not exist on the VPC resource
    assert vpc["Resource"]["Fn::Join"][1][-1]["Ref"].startswith("NetworkVpc")
    connection = accept["AcceptOnlyFromTheServerAccount"]
    assert sorted(connection["Resource"]) == [f"arn:aws:ec2:us-east-1:{a}:vpc-peering-connection/*" for a in sorted((SERVER_ACCOUNT, CLIENT_ACCOUNT))]
    assert connection["Condition"]["ArnLike"] == {"ec2:RequesterVpc": f"arn:aws:ec2:us-east-1:{SERVER_ACCOUNT}:vpc/*"}
    assert connection["Condition"]["ArnEquals"]["ec2:AccepterVpc"] == vpc["Resource"]


def test_client_routes_are_managed_only_by_the_servers_peering_operator(client):
    role = next(r for r in resources(client, "AWS::IAM::Role").values() if r["Properties"].get("RoleName") == "FL-peering-routes")
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Condition"] == {"ArnEquals": {"aws:PrincipalArn": f"arn:aws:iam::{SERVER_ACCOUNT}:role/FL-peering-operator"}}
    route_statement = next(s for s in statements(client) if s["Action"] == ["ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute"])
    assert len(route_statement["Resource"]) == 2 and "*" not in json.dumps(route_statement["Resource"])


# --- roles ------------------------------------------------------------------------------------------

def _kickoff(template):
    role = next(r for r in resources(template, "AWS::IAM::Role").values() if r["Properties"].get("RoleName") == "FL-kickoff-client-job")
    policy = next(p for p in resources(template, "AWS::IAM::ManagedPolicy").values() if p["Properties"].get("ManagedPolicyName") == "FL-sagemaker-actions")
    return role["Properties"], {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def test_kickoff_role_trusts_only_the_server_notebook_role_with_the_external_id(client):
    role, _ = _kickoff(client)
    trust = role["AssumeRolePolicyDocument"]["Statement"]
    assert len(trust) == 1
    assert trust[0]["Principal"] == {"AWS": f"arn:aws:iam::{SERVER_ACCOUNT}:root"}
    assert trust[0]["Condition"] == {
        "StringEquals": {"sts:ExternalId": "fl-fraud-client-a-change-me"},
        "ArnEquals": {"aws:PrincipalArn": f"arn:aws:iam::{SERVER_ACCOUNT}:role/FL-server-notebook"},
    }


def test_kickoff_policy_has_the_reference_permissions_scoped(client):
    _, policy = _kickoff(client)
    jobs = f"arn:aws:sagemaker:us-east-1:{CLIENT_ACCOUNT}:training-job/fl-client*"
    assert policy["StartJobsInThePrivateSubnetsOnly"]["Action"] == "sagemaker:CreateTrainingJob"
    assert policy["StartJobsInThePrivateSubnetsOnly"]["Resource"] == jobs
    condition = policy["StartJobsInThePrivateSubnetsOnly"]["Condition"]
    conditions = condition["ForAllValues:StringEquals"]
    assert len(conditions["sagemaker:VpcSubnets"]) == 2 and len(conditions["sagemaker:VpcSecurityGroupIds"]) == 1
    assert conditions["sagemaker:InstanceTypes"] == ["ml.m5.large"]
    assert condition["NumericLessThanEquals"] == {"sagemaker:MaxRuntimeInSeconds": 7200}
    data_key = {"Fn::GetAtt": [next(iter(resources(client, "AWS::KMS::Key"))), "Arn"]}
    assert condition["ArnEquals"] == {"sagemaker:VolumeKmsKey": data_key, "sagemaker:OutputKmsKey": data_key}
    assert set(condition["Null"]) == {"sagemaker:VpcSubnets", "sagemaker:VpcSecurityGroupIds", "sagemaker:InstanceTypes",
                                      "sagemaker:VolumeKmsKey", "sagemaker:OutputKmsKey"}
    assert sorted(policy["WatchAndStopJobs"]["Action"]) == ["sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob", "sagemaker:UpdateTrainingJob"]
    assert policy["WatchAndStopJobs"]["Resource"] == jobs
    assert sorted(policy["InspectNetwork"]["Action"]) == ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets", "ec2:DescribeVpcs"]
    assert policy["ReadExecutionRole"]["Action"] == "iam:GetRole"
    passing = policy["PassExecutionRoleToSageMakerOnly"]
    assert passing["Action"] == "iam:PassRole"
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert passing["Resource"] == {"Fn::GetAtt": [next(l for l in resources(client, "AWS::IAM::Role") if l.startswith("TrainingExecutionRole")), "Arn"]}
    reading = policy["ReadThisClientsSettingsAndPublicKeys"]
    assert reading["Action"] == ["ssm:GetParameter", "ssm:GetParameters"]
    assert reading["Resource"] == f"arn:aws:ssm:us-east-1:{CLIENT_ACCOUNT}:parameter/fl-fraud/client/client-a/*"  # settings and job keys
    assert set(policy) == {"StartJobsInThePrivateSubnetsOnly", "WatchAndStopJobs", "InspectNetwork", "ReadExecutionRole",
                           "PassExecutionRoleToSageMakerOnly", "ReadThisClientsSettingsAndPublicKeys"}
    assert not any(action.startswith(("s3:", "kms:")) for s in policy.values() for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))


def test_the_execution_role_is_least_privilege_and_never_sagemaker_full_access(three):
    for template in _all_templates(three):
        assert "AmazonSageMakerFullAccess" not in json.dumps(template.to_json())
    template = three.clients["ClientStack-insurer-a"]
    role_id = next(l for l in resources(template, "AWS::IAM::Role") if l.startswith("TrainingExecutionRole"))
    role = resources(template, "AWS::IAM::Role")[role_id]["Properties"]
    assert "ManagedPolicyArns" not in role
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    policy = next(p["Properties"] for p in resources(template, "AWS::IAM::ManagedPolicy").values() if p["Properties"]["Roles"] == [{"Ref": role_id}])
    by_sid = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert set(by_sid) == {"ReadCode", "ReadData", "ListData", "WriteArtifacts", "UseDataKey", "GrantDataKeyToTheVolume",
                           "PublishSuperNodePublicKey", "VpcNetworkInterfaces", "Logs", "Metrics"}
    assert sorted(by_sid["UseDataKey"]["Action"]) == ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"]
    assert by_sid["GrantDataKeyToTheVolume"]["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    assert sorted(by_sid["PublishSuperNodePublicKey"]["Action"]) == ["ssm:DeleteParameter", "ssm:PutParameter"]
    assert by_sid["PublishSuperNodePublicKey"]["Resource"].endswith(":parameter/fl-fraud/client/insurer-a/supernode-keys/fl-client*")
    assert by_sid["ReadData"]["Resource"]["Fn::Join"][1][-1] == "/data_prep/*"
    assert by_sid["WriteArtifacts"]["Resource"]["Fn::Join"][1][-1] == "/client_artifact/*"
    assert by_sid["Metrics"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}}
    for statement in policy["PolicyDocument"]["Statement"]:
        assert not any(action.endswith(":*") for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]))


def test_the_server_notebook_role_may_assume_each_clients_kickoff_role_and_nothing_broader(three):
    role = next(r for r in resources(three.server, "AWS::IAM::Role").values() if r["Properties"].get("RoleName") == "FL-server-notebook")
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    policy = next(p["Properties"] for p in resources(three.server, "AWS::IAM::ManagedPolicy").values() if p["Properties"].get("ManagedPolicyName") == "FL-allow-kickoff-client-job")
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRole"
    assert sorted(statement["Resource"]) == sorted(f"arn:aws:iam::{c['account']}:role/FL-kickoff-client-job" for c in THREE_CLIENTS)
    assume = [s for s in statements(three.server) if "sts:AssumeRole" in json.dumps(s["Action"]) and s != statement]
    assert len(assume) == 1
    assert all("FL-peering-routes" in json.dumps(s["Resource"]) for s in assume)


def test_no_inline_policies_on_the_projects_own_roles(three):
    for template in _all_templates(three):
        for lid, policy in resources(template, "AWS::IAM::Policy").items():
            assert lid.startswith(("CustomCDKBucketDeployment", "NetworkFlowLogRole")), lid


# --- buckets ----------------------------------------------------------------------------------------

def _buckets(template):
    return resources(template, "AWS::S3::Bucket")


def test_every_bucket_is_encrypted_private_versioned_logged_and_ssl_only(three):
    for template in _all_templates(three):
        policies = {json.dumps(p["Properties"]["Bucket"]): p for p in resources(template, "AWS::S3::BucketPolicy").values()}
        for lid, bucket in _buckets(template).items():
            properties = bucket["Properties"]
            algorithm = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
            assert algorithm == ("AES256" if lid.startswith("AccessLogs") else "aws:kms"), lid
            assert properties["PublicAccessBlockConfiguration"] == {
                "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True
            }
            assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
            if not lid.startswith("AccessLogs"):
                assert properties["LoggingConfiguration"]["DestinationBucketName"]["Ref"].startswith("AccessLogs")
            document = json.dumps(policies[json.dumps({"Ref": lid})]["Properties"]["PolicyDocument"])
            assert '"aws:SecureTransport": "false"' in document and '"Effect": "Deny"' in document


def test_client_account_has_code_data_and_artifact_buckets_server_has_code_and_results(default):
    assert sorted(lid[:-8] for lid in _buckets(default.clients["ClientStack"])) == ["AccessLogs", "Artifacts", "Code", "Data"]
    assert sorted(lid[:-8] for lid in _buckets(default.server)) == ["AccessLogs", "Code", "Results"]


def test_replaced_code_bundles_and_access_logs_expire_while_data_versions_are_kept(default):
    for template in _all_templates(default):
        for lid, bucket in _buckets(template).items():
            rules = bucket["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])
            days = [r["NoncurrentVersionExpiration"]["NoncurrentDays"] for r in rules if r["Status"] == "Enabled"]
            assert days == ({"AccessLogs": [90], "Code": [30]}.get(lid[:-8], [])), lid


def test_destroy_removes_buckets_with_their_objects_unless_data_is_retained(default, tmp_path):
    for template in _all_templates(default):
        for lid, bucket in _buckets(template).items():
            # the access-log bucket is the audit trail, and S3 delivers its logs late: always kept
            assert bucket["DeletionPolicy"] == ("Retain" if lid.startswith("AccessLogs") else "Delete"), lid
        assert len(resources(template, "Custom::S3AutoDeleteObjects")) == len(_buckets(template)) - 1
        for key in resources(template, "AWS::KMS::Key").values():
            assert key["DeletionPolicy"] == "Delete" and key["Properties"]["EnableKeyRotation"] is True
    retained = synthesize(tmp_path / "retain", retain_data=True)
    for template in _all_templates(retained):
        assert all(b["DeletionPolicy"] == "Retain" for b in _buckets(template).values())
        assert resources(template, "Custom::S3AutoDeleteObjects") == {}


def test_deployment_time_functions_log_to_a_log_group_the_stack_owns(default):
    for template in _all_templates(default):
        [(group_id, group)] = [(lid, g) for lid, g in resources(template, "AWS::Logs::LogGroup").items() if lid.startswith("DeploymentFunctionLogs")]
        assert group["DeletionPolicy"] == "Delete" and "KmsKeyId" in group["Properties"]
        functions = resources(template, "AWS::Lambda::Function")
        logged = {lid for lid, f in functions.items() if f["Properties"].get("LoggingConfig", {}).get("LogGroup") == {"Ref": group_id}}
        # BucketDeployment's and AwsCustomResource's Lambdas; CDK's own providers (bucket auto-delete,
        # default security group) take no log group
        providers = {lid for lid in functions if "CustomResourceProvider" in lid}
        assert len(logged) == 2 and set(functions) == logged | providers


# --- code bundle ------------------------------------------------------------------------------------

def test_the_code_bucket_receives_the_bundle_under_code(default):
    for template in _all_templates(default):
        [deployment] = resources(template, "Custom::CDKBucketDeployment").values()
        properties = deployment["Properties"]
        assert properties["DestinationBucketKeyPrefix"] == "code/"
        assert properties["Prune"] is False
        assert properties["DestinationBucketName"]["Ref"].startswith("Code")


def test_the_synthesized_asset_is_the_deterministic_bundle(default):
    bundle = configured_bundle()
    assets = [p for p in default.outdir.glob(f"asset.*/{BUNDLE_NAME}")]
    assert assets, "no asset holds source.tar.gz"
    assert all(asset.read_bytes() == bundle.tarball.read_bytes() for asset in assets)
    with tarfile.open(bundle.tarball) as archive:
        names = archive.getnames()
        assert all(member.mtime == 0 and member.uid == 0 for member in archive.getmembers())
    assert ENTRY_POINT in names and "requirements.txt" in names and "fl_runtime/client_app.py" in names
    assert any(name.startswith("wheels/flwr-1.42.0") for name in names)


# --- notebooks and outputs --------------------------------------------------------------------------

def test_notebooks_are_private_encrypted_rootless_imdsv2_and_stop_when_idle(three):
    for template in _all_templates(three):
        [notebook] = resources(template, "AWS::SageMaker::NotebookInstance").values()
        properties = notebook["Properties"]
        assert properties["DirectInternetAccess"] == "Disabled"
        assert properties["RootAccess"] == "Disabled"
        assert "KmsKeyId" in properties and properties["SubnetId"]["Ref"].startswith("NetworkVpcprivateSubnet")
        assert properties["InstanceMetadataServiceConfiguration"] == {"MinimumInstanceMetadataServiceVersion": "2"}
        [lifecycle] = resources(template, "AWS::SageMaker::NotebookInstanceLifecycleConfig").values()
        script = json.dumps(lifecycle["Properties"]["OnStart"])
        assert "notebook/install.sh" in script and "idle_stop.py 60" in script and "code/source.tar.gz" in script


def test_client_settings_are_published_as_outputs_and_in_ssm(client):
    parameter = next(p["Properties"] for p in resources(client, "AWS::SSM::Parameter").values() if p["Properties"]["Name"] == "/fl-fraud/client/client-a/settings")
    document = json.dumps(parameter["Value"])
    for key in ("kickoff_role_arn", "external_id", "execution_role_arn", "subnet_ids", "training_security_group_id", "code_bucket",
                "source_uri", "data_bucket", "artifact_bucket", "training_image", "training_instance_type"):
        assert f'\\"{key}\\"' in document, key
    outputs = client.to_json()["Outputs"]
    assert {"KickoffRoleArn", "ExternalId", "ExecutionRoleArn", "SubnetIds", "TrainingSecurityGroupId"} <= {k[len("Published"):-8] for k in outputs}


def test_server_settings_list_every_client_with_its_kickoff_role(three):
    parameter = next(p["Properties"] for p in resources(three.server, "AWS::SSM::Parameter").values() if p["Properties"]["Name"] == "/fl-fraud/server/settings")
    document = json.dumps(parameter["Value"])
    for spec in THREE_CLIENTS:
        assert f"arn:aws:iam::{spec['account']}:role/FL-kickoff-client-job" in document and spec["external_id"] in document
    assert '\\"flower_port\\":9092' in document


# --- compliance -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["default", "three"])
def test_cdk_nag_packs_pass_and_every_acknowledgment_is_exact_and_explained(name, request):
    report = request.getfixturevalue(name).report()
    packs = {r["pluginName"]: r for r in report["pluginReports"]}
    for pack in ("AwsSolutions", "HIPAA.Security"):
        assert packs[pack]["conclusion"] == "success"
        assert packs[pack]["violations"] == []
        for suppressed in packs[pack]["suppressedViolations"]:
            assert suppressed["acknowledgedId"] == f"{pack}::{suppressed['ruleName']}"  # the exact finding, not the whole rule
            assert len(suppressed["reason"]) >= 40
            stack = suppressed["violatingConstructs"][0]["constructPath"].split("/")[0]
            assert suppressed["acknowledgedAt"] != stack  # never waved through for a whole stack
