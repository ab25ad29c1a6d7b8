// Validates Kubernetes manifests against the API's JSON schemas (the kubernetes-models
// package, and its Prometheus Operator models for ServiceMonitor).
//   node validate_k8s.mjs FILE.yaml...
// Prints "ok KIND/NAME (FILE)" for each document; exits 1 if any document is invalid or of a
// kind this script has no schema for.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import * as core from "kubernetes-models/v1";
import * as apps from "kubernetes-models/apps/v1";
import * as policy from "kubernetes-models/policy/v1";
import * as monitoring from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const models = {
  "v1": core,
  "apps/v1": apps,
  "policy/v1": policy,
  "monitoring.coreos.com/v1": monitoring,
};

let failed = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    if (doc.errors.length) {
      console.log(`FAIL ${file}: YAML: ${doc.errors[0].message}`);
      failed++;
      continue;
    }
    const obj = doc.toJS();
    if (obj === null) continue;
    const what = `${obj.kind}/${obj.metadata?.name} (${file})`;
    const Model = models[obj.apiVersion]?.[obj.kind];
    if (!Model) {
      console.log(`FAIL ${what}: no schema for ${obj.apiVersion} ${obj.kind}`);
      failed++;
      continue;
    }
    try {
      new Model(obj).validate();
      console.log(`ok ${what}`);
    } catch (err) {
      console.log(`FAIL ${what}: ${err.message}`);
      failed++;
    }
  }
}
process.exit(failed ? 1 : 0);
