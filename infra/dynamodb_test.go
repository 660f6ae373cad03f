package infra_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/payrail/payrail/idempotency/dynamodb"
	"github.com/payrail/payrail/internal/testkit/dynamodblocal"
)

// TestDynamoDBTableLive creates the idempotency table with the driver's own
// CreateTable on DynamoDB Local (a real peer: it skips locally when absent,
// fails under CI=true) and compares what DynamoDB reports with the
// Terraform aws_dynamodb_table.
func TestDynamoDBTableLive(t *testing.T) {
	srv, err := dynamodblocal.Start()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("DynamoDB Local is required under CI=true: %v", err)
		}
		t.Skipf("DynamoDB Local unavailable (run .ci/setup.d/idempotency-dynamodb-local.sh): %v", err)
	}
	defer srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := awsddb.New(awsddb.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")})
	const table = "payrail-idempotency"
	if err := dynamodb.CreateTable(ctx, c, table); err != nil {
		t.Fatal(err)
	}
	d, err := c.DescribeTable(ctx, &awsddb.DescribeTableInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatal(err)
	}
	ttl, err := c.DescribeTimeToLive(ctx, &awsddb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatal(err)
	}

	tbl := tfBlock(t, tfRoot+"/modules/aws", "resource", "aws_dynamodb_table", "idempotency")
	ks := d.Table.KeySchema
	if len(ks) != 1 || string(ks[0].KeyType) != "HASH" || aws.ToString(ks[0].AttributeName) != literal(t, tbl, "hash_key").AsString() {
		t.Errorf("driver's key schema %+v, terraform hash_key %s and no range_key", ks, literal(t, tbl, "hash_key").AsString())
	}
	ad, attr := d.Table.AttributeDefinitions, nested(t, tbl, "attribute")
	if len(ad) != 1 || aws.ToString(ad[0].AttributeName) != literal(t, attr, "name").AsString() || string(ad[0].AttributeType) != literal(t, attr, "type").AsString() {
		t.Errorf("driver's attributes %+v, terraform attribute %s %s", ad, literal(t, attr, "name").AsString(), literal(t, attr, "type").AsString())
	}
	if b := d.Table.BillingModeSummary; b == nil || string(b.BillingMode) != literal(t, tbl, "billing_mode").AsString() {
		t.Errorf("driver's billing mode %+v, terraform %s", b, literal(t, tbl, "billing_mode").AsString())
	}
	tb := nested(t, tbl, "ttl")
	if dd := ttl.TimeToLiveDescription; dd == nil || aws.ToString(dd.AttributeName) != literal(t, tb, "attribute_name").AsString() {
		t.Errorf("driver's TTL %+v, terraform ttl attribute_name %s", dd, literal(t, tb, "attribute_name").AsString())
	}
}
