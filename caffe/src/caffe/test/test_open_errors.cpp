// caffe/patches/data-open-errors.patch, label-range-checks.patch and the
// order in solver-snapshot-directory.patch: failures to open a file name the
// path and the cause, labels outside the classes stop the CPU forward pass
// with a message, and a solver whose net cannot load creates nothing on disk.
#include <stdlib.h>

#include <string>
#include <vector>

#include "boost/filesystem.hpp"
#include "boost/scoped_ptr.hpp"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layers/accuracy_layer.hpp"
#include "caffe/layers/data_layer.hpp"
#include "caffe/layers/softmax_loss_layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/sgd_solvers.hpp"
#include "caffe/util/db.hpp"
#include "caffe/util/io.hpp"

#include "caffe/test/test_caffe_main.hpp"

namespace caffe {

class OpenErrorsTest : public ::testing::Test {
 protected:
  // Threadsafe death tests re-run the test in a fresh process, which must
  // use the parent's temporary folder (the messages name paths in it): the
  // parent passes it on in the environment.
  virtual void SetUp() {
    // Caffe may run threads (prefetching); fork-only death tests warn then
    ::testing::FLAGS_gtest_death_test_style = "threadsafe";
    Caffe::set_mode(Caffe::CPU);
    const char* inherited = getenv(kDirVariable);
    if (inherited) {
      temp_dir_ = inherited;
    } else {
      MakeTempDir(&temp_dir_);
      setenv(kDirVariable, temp_dir_.c_str(), 1);
    }
  }
  virtual void TearDown() {
    unsetenv(kDirVariable);
    boost::system::error_code ignored;
    boost::filesystem::remove_all(temp_dir_, ignored);
  }
  static const char* const kDirVariable;
  string temp_dir_;
};

const char* const OpenErrorsTest::kDirVariable = "CAFFE_OPEN_ERRORS_TEST_DIR";

#ifdef USE_LMDB
TEST_F(OpenErrorsTest, MissingLmdbNamesThePathAndTheCause) {
  const string source = temp_dir_ + "/no_such_lmdb";
  boost::scoped_ptr<db::DB> db(db::GetDB(DataParameter_DB_LMDB));
  EXPECT_DEATH(db->Open(source, db::READ),
               "Cannot open LMDB '" + source + "' for reading: No such file or "
               "directory \\(an LMDB is a folder that holds data.mdb\\)");
}

TEST_F(OpenErrorsTest, RelativeLmdbPathNamesTheWorkingDirectory) {
  boost::scoped_ptr<db::DB> db(db::GetDB(DataParameter_DB_LMDB));
  EXPECT_DEATH(db->Open("no/such/lmdb", db::READ),
               "Cannot open LMDB 'no/such/lmdb' \\(relative to the working "
               "directory /[^)]*\\) for reading: No such file or directory");
}

TEST_F(OpenErrorsTest, LmdbThatCannotBeCreatedNamesThePath) {
  const string source = temp_dir_ + "/missing/parent/new_lmdb";
  boost::scoped_ptr<db::DB> db(db::GetDB(DataParameter_DB_LMDB));
  EXPECT_DEATH(db->Open(source, db::NEW),
               "Cannot create the LMDB folder '" + source +
               "': No such file or directory");
}

TEST_F(OpenErrorsTest, EmptyLmdbStopsTheDataLayerNamingIt) {
  const string source = temp_dir_ + "/empty_lmdb";
  if (!boost::filesystem::exists(source)) {  // the death test's process: made
    boost::scoped_ptr<db::DB> db(db::GetDB(DataParameter_DB_LMDB));
    db->Open(source, db::NEW);  // written, never given a record
    db->Close();
  }
  LayerParameter param;
  param.set_name("mnist");
  param.set_phase(TRAIN);
  param.mutable_data_param()->set_source(source);
  param.mutable_data_param()->set_batch_size(2);
  param.mutable_data_param()->set_backend(DataParameter_DB_LMDB);
  Blob<float> data, label;
  vector<Blob<float>*> bottom, top;
  top.push_back(&data);
  top.push_back(&label);
  EXPECT_DEATH({
      DataLayer<float> layer(param);
      layer.SetUp(bottom, top);
    }, "Data layer 'mnist': '" + source + "' holds no records");
}
#endif  // USE_LMDB

#ifdef USE_LEVELDB
TEST_F(OpenErrorsTest, MissingLevelDBNamesThePathAndTheCause) {
  const string source = temp_dir_ + "/no_such_leveldb";
  boost::scoped_ptr<db::DB> db(db::GetDB(DataParameter_DB_LEVELDB));
  EXPECT_DEATH(db->Open(source, db::READ),
               "Cannot open LevelDB '" + source + "' for reading: .*does not "
               "exist");
}
#endif  // USE_LEVELDB

TEST_F(OpenErrorsTest, MissingPrototxtAndCaffemodelNameThePathAndTheCause) {
  NetParameter net;
  const string text = temp_dir_ + "/no_such_net.prototxt";
  EXPECT_DEATH(ReadProtoFromTextFile(text, &net),
               "Cannot open '" + text + "': No such file or directory");
  const string weights = temp_dir_ + "/no_such.caffemodel";
  EXPECT_DEATH(ReadProtoFromBinaryFile(weights, &net),
               "Cannot open '" + weights + "': No such file or directory");
  EXPECT_DEATH(ReadProtoFromTextFile("models/none.prototxt", &net),
               "Cannot open 'models/none.prototxt' \\(relative to the working "
               "directory /[^)]*\\): No such file or directory");
}

TEST_F(OpenErrorsTest, DescribePath) {
  EXPECT_EQ("'/a/b'", DescribePath("/a/b"));
  const string cwd = boost::filesystem::current_path().string();
  EXPECT_EQ("'a/b' (relative to the working directory " + cwd + ")",
            DescribePath("a/b"));
}

// scores N x 10, labels {3, label}: SetUp, then Forward in CPU mode
template <typename LayerType>
static void ForwardWithLabel(const LayerParameter& param, float label) {
  Blob<float> scores(2, 10, 1, 1), labels(2, 1, 1, 1), top;
  for (int i = 0; i < scores.count(); ++i) {
    scores.mutable_cpu_data()[i] = 0.1f * i;
  }
  labels.mutable_cpu_data()[0] = 3;
  labels.mutable_cpu_data()[1] = label;
  vector<Blob<float>*> bottom, tops;
  bottom.push_back(&scores);
  bottom.push_back(&labels);
  tops.push_back(&top);
  LayerType layer(param);
  layer.SetUp(bottom, tops);
  layer.Forward(bottom, tops);
}

TEST_F(OpenErrorsTest, SoftmaxWithLossChecksLabelsInReleaseBuilds) {
  LayerParameter param;
  param.set_name("loss");
  ForwardWithLabel<SoftmaxWithLossLayer<float> >(param, 9);  // in range: fine
  EXPECT_DEATH(ForwardWithLabel<SoftmaxWithLossLayer<float> >(param, 10),
               "SoftmaxWithLoss layer 'loss': label 10 \\(label blob index "
               "1\\) is outside the 10 classes \\[0, 10\\) of its scores");
  EXPECT_DEATH(ForwardWithLabel<SoftmaxWithLossLayer<float> >(param, -1),
               "label -1 \\(label blob index 1\\) is outside the 10 classes");
  // ignore_label still skips the check, as it skips the example
  param.mutable_loss_param()->set_ignore_label(255);
  ForwardWithLabel<SoftmaxWithLossLayer<float> >(param, 255);
}

TEST_F(OpenErrorsTest, AccuracyChecksLabelsInReleaseBuilds) {
  LayerParameter param;
  param.set_name("accuracy");
  ForwardWithLabel<AccuracyLayer<float> >(param, 0);
  EXPECT_DEATH(ForwardWithLabel<AccuracyLayer<float> >(param, 12),
               "Accuracy layer 'accuracy': label 12 \\(label blob index 1\\) "
               "is outside the 10 classes \\[0, 10\\)");
}

// A solver whose net names a missing LMDB dies naming it, and only then would
// it have created its snapshot directory: nothing is left on disk. With a net
// that loads, the same solver creates the directory (the order, not the
// creation, is what the first half tests).
static SolverParameter SolverWithData(const string& snapshot_prefix,
                                      const string& data_layer) {
  SolverParameter param;
  CHECK(google::protobuf::TextFormat::ParseFromString(
      "base_lr: 0.01 max_iter: 1 lr_policy: 'fixed' solver_mode: CPU "
      "net_param { " + data_layer +
      "  layer { name: 'ip' type: 'InnerProduct' bottom: 'data' top: 'ip' "
      "    inner_product_param { num_output: 2 } } "
      "  layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip' "
      "    bottom: 'label' top: 'loss' } }", &param));
  param.set_snapshot_prefix(snapshot_prefix);
  return param;
}

#ifdef USE_LMDB
TEST_F(OpenErrorsTest, SolverCreatesNothingBeforeItsNetsLoad) {
  const string snapshot_dir = temp_dir_ + "/runs/stage1";
  const string source = temp_dir_ + "/no_such_lmdb";
  const SolverParameter broken = SolverWithData(snapshot_dir + "/lenet",
      "layer { name: 'data' type: 'Data' top: 'data' top: 'label' "
      "  data_param { source: '" + source + "' batch_size: 2 backend: LMDB } }");
  EXPECT_DEATH(SGDSolver<float> solver(broken),
               "Cannot open LMDB '" + source + "' for reading");
  EXPECT_FALSE(boost::filesystem::exists(temp_dir_ + "/runs"));

  const SolverParameter working = SolverWithData(snapshot_dir + "/lenet",
      "layer { name: 'data' type: 'DummyData' top: 'data' top: 'label' "
      "  dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }");
  SGDSolver<float> solver(working);
  EXPECT_TRUE(boost::filesystem::is_directory(snapshot_dir));
}
#endif  // USE_LMDB

}  // namespace caffe
