#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/generative_loss_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

// Straight from the definition (journal Eq. 15/19), in double precision and
// without the layer's reformulation as column masses: the objective summed
// over examples, each term recomputing its column's normaliser.
static double ReferenceObjective(const vector<double>& score,
    const vector<int>& label, int num, int classes, bool has_ignore,
    int ignore_label, bool semi, int unlabeled_label, double lambda,
    const vector<double>& prior, int* kept_out) {
  vector<bool> kept(num);
  int kept_count = 0;
  for (int j = 0; j < num; ++j) {
    kept[j] = !(has_ignore && label[j] == ignore_label);
    kept_count += kept[j];
  }
  *kept_out = kept_count;
  double objective = 0;
  for (int i = 0; i < num; ++i) {
    if (!kept[i]) { continue; }
    const bool unlabeled = semi && label[i] == unlabeled_label;
    double best = -INFINITY;
    for (int y = 0; y < classes; ++y) {
      if (!unlabeled && y != label[i]) { continue; }
      double batch_mean = 0;
      for (int k = 0; k < num; ++k) {
        if (kept[k]) { batch_mean += std::exp(score[k * classes + y]); }
      }
      batch_mean /= kept_count;
      double log_p = score[i * classes + y] - std::log(batch_mean);
      if (unlabeled) { log_p += std::log(prior[y]); }
      best = std::max(best, log_p);
    }
    objective += unlabeled ? lambda * best : best;
  }
  return objective;
}

template <typename TypeParam>
class GenerativeLossLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  GenerativeLossLayerTest()
      : blob_bottom_score_(new Blob<Dtype>()),
        blob_bottom_label_(new Blob<Dtype>()),
        blob_top_loss_(new Blob<Dtype>()),
        blob_top_ess_(new Blob<Dtype>()) {
    Caffe::set_random_seed(1701);
    Resize(10, 5);
  }
  virtual ~GenerativeLossLayerTest() {
    delete blob_bottom_score_;
    delete blob_bottom_label_;
    delete blob_top_loss_;
    delete blob_top_ess_;
  }

  // Gaussian scores (std 2, so columns are far from uniform) and uniform
  // random labels in [0, classes).
  void Resize(int num, int classes) {
    num_ = num;
    classes_ = classes;
    blob_bottom_score_->Reshape(num, classes, 1, 1);
    FillerParameter filler_param;
    filler_param.set_std(2);
    GaussianFiller<Dtype> filler(filler_param);
    filler.Fill(blob_bottom_score_);
    blob_bottom_label_->Reshape(num, 1, 1, 1);
    for (int j = 0; j < num; ++j) {
      blob_bottom_label_->mutable_cpu_data()[j] = caffe_rng_rand() % classes;
    }
    blob_bottom_vec_.clear();
    blob_bottom_vec_.push_back(blob_bottom_score_);
    blob_bottom_vec_.push_back(blob_bottom_label_);
    blob_top_vec_.clear();
    blob_top_vec_.push_back(blob_top_loss_);
  }

  void SetLabels(const int* labels) {
    for (int j = 0; j < num_; ++j) {
      blob_bottom_label_->mutable_cpu_data()[j] = labels[j];
    }
  }

  // Makes class `winner` the clear arg-max of unlabelled example j, so that
  // the gradient checker's perturbations cannot flip the arg-max.
  void MakeClearWinner(int j, int winner) {
    blob_bottom_score_->mutable_cpu_data()[j * classes_ + winner] += 8;
  }

  double Reference(const LayerParameter& param, int* kept) {
    vector<double> score(blob_bottom_score_->cpu_data(),
        blob_bottom_score_->cpu_data() + num_ * classes_);
    vector<int> label(num_);
    for (int j = 0; j < num_; ++j) {
      label[j] = static_cast<int>(blob_bottom_label_->cpu_data()[j]);
    }
    const GenerativeLossParameter& gp = param.generative_loss_param();
    vector<double> prior(classes_, 1.0 / classes_);
    if (gp.class_prior_size()) {
      double total = 0;
      for (int c = 0; c < classes_; ++c) { total += gp.class_prior(c); }
      for (int c = 0; c < classes_; ++c) {
        prior[c] = gp.class_prior(c) / total;
      }
    }
    return ReferenceObjective(score, label, num_, classes_,
        param.loss_param().has_ignore_label(),
        param.loss_param().ignore_label(), gp.semi_supervised(),
        gp.unlabeled_label(), gp.unlabeled_weight(), prior, kept);
  }

  void CheckForwardAgainstReference(const LayerParameter& param,
      double normalizer_if_known) {
    GenerativeLossLayer<Dtype> layer(param);
    layer.SetUp(blob_bottom_vec_, blob_top_vec_);
    layer.Forward(blob_bottom_vec_, blob_top_vec_);
    int kept = 0;
    const double objective = Reference(param, &kept);
    const double normalizer = normalizer_if_known > 0 ?
        normalizer_if_known : std::max(kept, 1);
    const double expected = -objective / normalizer;
    EXPECT_NEAR(blob_top_loss_->cpu_data()[0], expected,
                1e-4 * std::max(1.0, std::fabs(expected)));
  }

  void CheckGradient(const LayerParameter& param) {
    GenerativeLossLayer<Dtype> layer(param);
    GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
    checker.CheckGradientExhaustive(&layer, blob_bottom_vec_,
        blob_top_vec_, 0);
  }

  int num_, classes_;
  Blob<Dtype>* const blob_bottom_score_;
  Blob<Dtype>* const blob_bottom_label_;
  Blob<Dtype>* const blob_top_loss_;
  Blob<Dtype>* const blob_top_ess_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(GenerativeLossLayerTest, TestDtypesAndDevices);

TYPED_TEST(GenerativeLossLayerTest, TestForwardMatchesDefinition) {
  LayerParameter layer_param;
  this->CheckForwardAgainstReference(layer_param, -1);
}

TYPED_TEST(GenerativeLossLayerTest, TestForwardEachNormalization) {
  const LossParameter_NormalizationMode modes[] = {
      LossParameter_NormalizationMode_FULL,
      LossParameter_NormalizationMode_VALID,
      LossParameter_NormalizationMode_BATCH_SIZE,
      LossParameter_NormalizationMode_NONE};
  const int labels[10] = {0, 1, 2, 2, 4, 4, 1, 0, 3, 3};
  this->SetLabels(labels);
  for (int ignore = 0; ignore < 2; ++ignore) {
    for (int m = 0; m < 4; ++m) {
      LayerParameter layer_param;
      layer_param.mutable_loss_param()->set_normalization(modes[m]);
      if (ignore) { layer_param.mutable_loss_param()->set_ignore_label(4); }
      // FULL and BATCH_SIZE divide by N even when examples are ignored;
      // VALID by the kept count; NONE by 1.
      const double normalizer = modes[m] == LossParameter_NormalizationMode_NONE
          ? 1.0 : (modes[m] == LossParameter_NormalizationMode_VALID ?
                   (ignore ? 8.0 : 10.0) : 10.0);
      this->CheckForwardAgainstReference(layer_param, normalizer);
    }
  }
}

TYPED_TEST(GenerativeLossLayerTest, TestGradient) {
  LayerParameter layer_param;
  this->CheckGradient(layer_param);
}

TYPED_TEST(GenerativeLossLayerTest, TestGradientLossWeight) {
  LayerParameter layer_param;
  layer_param.add_loss_weight(3.0);
  this->CheckGradient(layer_param);
}

TYPED_TEST(GenerativeLossLayerTest, TestGradientIgnoreLabel) {
  LayerParameter layer_param;
  layer_param.mutable_loss_param()->set_ignore_label(2);
  const int labels[10] = {2, 1, 0, 2, 4, 3, 1, 2, 0, 4};
  this->SetLabels(labels);
  this->CheckForwardAgainstReference(layer_param, -1);
  this->CheckGradient(layer_param);
}

TYPED_TEST(GenerativeLossLayerTest, TestIgnoredExamplesGetZeroGradient) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter layer_param;
  layer_param.mutable_loss_param()->set_ignore_label(-7);
  const int labels[10] = {-7, 1, 0, 2, 4, 3, 1, -7, 0, 4};
  this->SetLabels(labels);
  GenerativeLossLayer<Dtype> layer(layer_param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  this->blob_top_loss_->mutable_cpu_diff()[0] = 1;
  vector<bool> propagate_down(2, false);
  propagate_down[0] = true;
  layer.Backward(this->blob_top_vec_, propagate_down, this->blob_bottom_vec_);
  const Dtype* diff = this->blob_bottom_score_->cpu_diff();
  for (int c = 0; c < this->classes_; ++c) {
    EXPECT_EQ(diff[0 * this->classes_ + c], 0);
    EXPECT_EQ(diff[7 * this->classes_ + c], 0);
  }
}

TYPED_TEST(GenerativeLossLayerTest, TestGradientEachNormalization) {
  const LossParameter_NormalizationMode modes[] = {
      LossParameter_NormalizationMode_FULL,
      LossParameter_NormalizationMode_BATCH_SIZE,
      LossParameter_NormalizationMode_NONE};
  const int labels[10] = {0, 1, 2, 2, 4, 4, 1, 0, 3, 3};
  this->SetLabels(labels);
  for (int m = 0; m < 3; ++m) {
    LayerParameter layer_param;
    layer_param.mutable_loss_param()->set_normalization(modes[m]);
    layer_param.mutable_loss_param()->set_ignore_label(3);
    this->CheckGradient(layer_param);
  }
}

TYPED_TEST(GenerativeLossLayerTest, TestGradientAbsentClassesAndSingleton) {
  // Classes 2 and 3 absent (zero mass: no gradient in their columns) and
  // class 4 held by a single example.
  LayerParameter layer_param;
  const int labels[10] = {0, 1, 0, 1, 0, 4, 1, 1, 0, 0};
  this->SetLabels(labels);
  this->CheckForwardAgainstReference(layer_param, -1);
  this->CheckGradient(layer_param);
}

TYPED_TEST(GenerativeLossLayerTest, TestGradientSingleExample) {
  typedef typename TypeParam::Dtype Dtype;
  this->Resize(1, 5);
  LayerParameter layer_param;
  GenerativeLossLayer<Dtype> layer(layer_param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  // With one sample the batch normaliser is the example itself: log p = 0.
  EXPECT_NEAR(this->blob_top_loss_->cpu_data()[0], 0, 1e-5);
  this->CheckGradient(layer_param);
}

TYPED_TEST(GenerativeLossLayerTest, TestGradientSemiSupervised) {
  LayerParameter layer_param;
  GenerativeLossParameter* gp = layer_param.mutable_generative_loss_param();
  gp->set_semi_supervised(true);
  gp->set_unlabeled_weight(0.1);
  const int labels[10] = {0, -1, 2, -1, 4, 3, -1, 2, 0, -1};
  this->SetLabels(labels);
  this->MakeClearWinner(1, 3);
  this->MakeClearWinner(3, 0);
  this->MakeClearWinner(6, 3);
  this->MakeClearWinner(9, 1);
  this->CheckForwardAgainstReference(layer_param, -1);
  this->CheckGradient(layer_param);
}

TYPED_TEST(GenerativeLossLayerTest, TestGradientSemiSupervisedPriorIgnore) {
  LayerParameter layer_param;
  GenerativeLossParameter* gp = layer_param.mutable_generative_loss_param();
  gp->set_semi_supervised(true);
  gp->set_unlabeled_label(9);
  gp->set_unlabeled_weight(0.5);
  const float prior[5] = {1, 2, 3, 4, 10};
  for (int c = 0; c < 5; ++c) { gp->add_class_prior(prior[c]); }
  layer_param.mutable_loss_param()->set_ignore_label(-1);
  const int labels[10] = {0, 9, -1, 9, 4, 3, 9, 2, -1, 1};
  this->SetLabels(labels);
  this->MakeClearWinner(1, 2);
  this->MakeClearWinner(3, 4);
  this->MakeClearWinner(6, 0);
  this->CheckForwardAgainstReference(layer_param, -1);
  this->CheckGradient(layer_param);
}

TYPED_TEST(GenerativeLossLayerTest, TestEssTop) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter layer_param;
  this->blob_top_vec_.push_back(this->blob_top_ess_);
  const int labels[10] = {0, 1, 0, 1, 0, 1, 1, 1, 0, 0};
  this->SetLabels(labels);
  GenerativeLossLayer<Dtype> layer(layer_param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  // The ESS top is a diagnostic: loss weight 0 unless the user says.
  EXPECT_EQ(layer.loss(1), 0);
  EXPECT_EQ(layer.loss(0), 1);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  double ess_mean = 0;
  const Dtype* score = this->blob_bottom_score_->cpu_data();
  for (int c = 0; c < 2; ++c) {  // the classes present
    double total = 0, total_sq = 0;
    for (int j = 0; j < 10; ++j) { total += std::exp(score[j * 5 + c]); }
    for (int j = 0; j < 10; ++j) {
      const double w = std::exp(score[j * 5 + c]) / total;
      total_sq += w * w;
    }
    ess_mean += 1.0 / total_sq / 2;
  }
  EXPECT_NEAR(this->blob_top_ess_->cpu_data()[0], ess_mean / 10, 1e-4);

  // Equal scores: uniform weights, ESS = N, fraction 1.
  caffe_set(50, Dtype(0.3), this->blob_bottom_score_->mutable_cpu_data());
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_NEAR(this->blob_top_ess_->cpu_data()[0], 1, 1e-5);

  // Gradient of the loss is unchanged by the extra top.
  Caffe::set_random_seed(1701);
  this->Resize(10, 5);
  this->blob_top_vec_.push_back(this->blob_top_ess_);
  GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
  GenerativeLossLayer<Dtype> layer2(layer_param);
  layer2.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  checker.CheckGradientSingle(&layer2, this->blob_bottom_vec_,
      this->blob_top_vec_, 0, 0, 0);
}

// Tops [2]-[4]: the weights of each column restricted to its own examples,
// recomputed here from the definition in double precision.
TYPED_TEST(GenerativeLossLayerTest, TestWithinClassDiagnostics) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> ess, within, within_sd, cross;
  this->blob_top_vec_.push_back(this->blob_top_ess_);
  this->blob_top_vec_.push_back(&within);
  this->blob_top_vec_.push_back(&within_sd);
  this->blob_top_vec_.push_back(&cross);
  // classes 0, 1, 3 present (2 and 4 absent); example 9 ignored
  const int labels[10] = {0, 1, 0, 1, 3, 1, 3, 1, 0, 4};
  this->SetLabels(labels);
  LayerParameter layer_param;
  layer_param.mutable_loss_param()->set_ignore_label(4);
  GenerativeLossLayer<Dtype> layer(layer_param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  for (int i = 1; i < 5; ++i) { EXPECT_EQ(layer.loss(i), 0); }
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const Dtype* score = this->blob_bottom_score_->cpu_data();
  vector<double> fractions, crosses;
  for (int c = 0; c < 5; ++c) {
    double total = 0, in_mass = 0, in_sq = 0;
    int n_c = 0;
    for (int j = 0; j < 9; ++j) { total += std::exp(score[j * 5 + c]); }
    for (int j = 0; j < 9; ++j) {
      if (labels[j] != c) { continue; }
      const double w = std::exp(score[j * 5 + c]) / total;
      in_mass += w;
      in_sq += w * w;
      ++n_c;
    }
    if (n_c == 0) { continue; }
    fractions.push_back(in_mass * in_mass / in_sq / n_c);
    crosses.push_back(1 - in_mass);
  }
  ASSERT_EQ(fractions.size(), 3);
  double mean = 0, cross_mean = 0, sd = 0;
  for (int i = 0; i < 3; ++i) {
    mean += fractions[i] / 3;
    cross_mean += crosses[i] / 3;
  }
  for (int i = 0; i < 3; ++i) { sd += std::pow(fractions[i] - mean, 2) / 3; }
  EXPECT_NEAR(within.cpu_data()[0], mean, 1e-5);
  EXPECT_NEAR(within_sd.cpu_data()[0], std::sqrt(sd), 1e-5);
  EXPECT_NEAR(cross.cpu_data()[0], cross_mean, 1e-5);
  EXPECT_GT(within.cpu_data()[0], 0);
  EXPECT_LE(within.cpu_data()[0], 1 + 1e-6);

  // Equal scores: every column weighs all kept examples equally, so the
  // within-class fraction is 1 everywhere (sd 0) and column c puts
  // 1 - n_c / M on the other classes' examples.
  caffe_set(50, Dtype(0.7), this->blob_bottom_score_->mutable_cpu_data());
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_NEAR(within.cpu_data()[0], 1, 1e-5);
  EXPECT_NEAR(within_sd.cpu_data()[0], 0, 1e-3);
  EXPECT_NEAR(cross.cpu_data()[0], (1 - 3.0 / 9 + 1 - 4.0 / 9 + 1 - 2.0 / 9) / 3,
              1e-5);
}

TYPED_TEST(GenerativeLossLayerTest, TestExtremeScoresStayFinite) {
  typedef typename TypeParam::Dtype Dtype;
  Dtype* score = this->blob_bottom_score_->mutable_cpu_data();
  for (int i = 0; i < 50; ++i) { score[i] = (i % 3 == 0) ? 1e4 : -1e4; }
  LayerParameter layer_param;
  GenerativeLossLayer<Dtype> layer(layer_param);
  this->blob_top_vec_.push_back(this->blob_top_ess_);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_TRUE(std::isfinite(this->blob_top_loss_->cpu_data()[0]));
  EXPECT_TRUE(std::isfinite(this->blob_top_ess_->cpu_data()[0]));
  this->blob_top_loss_->mutable_cpu_diff()[0] = 1;
  vector<bool> propagate_down(2, false);
  propagate_down[0] = true;
  layer.Backward(this->blob_top_vec_, propagate_down, this->blob_bottom_vec_);
  const Dtype* diff = this->blob_bottom_score_->cpu_diff();
  // Each column's gradient sums to zero (sum_j W[j, c] = 1, sum_j t = m_c),
  // up to rounding: at |F| = 1e4 a float ulp is ~1e-3 of the exponent.
  const double tolerance = sizeof(Dtype) == 4 ? 2e-3 : 1e-9;
  for (int c = 0; c < 5; ++c) {
    double column_sum = 0;
    for (int j = 0; j < 10; ++j) {
      EXPECT_TRUE(std::isfinite(diff[j * 5 + c]));
      column_sum += diff[j * 5 + c];
    }
    EXPECT_NEAR(column_sum, 0, tolerance);
  }
}

TYPED_TEST(GenerativeLossLayerTest, TestAllIgnoredGivesZero) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter layer_param;
  layer_param.mutable_loss_param()->set_ignore_label(3);
  caffe_set(10, Dtype(3), this->blob_bottom_label_->mutable_cpu_data());
  this->blob_top_vec_.push_back(this->blob_top_ess_);
  GenerativeLossLayer<Dtype> layer(layer_param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_loss_->cpu_data()[0], 0);
  EXPECT_EQ(this->blob_top_ess_->cpu_data()[0], 0);
}

// Bad input stops with a message that says what was expected, on either
// device: the GPU checks labels and scores on the device and reports
// through the host's own messages (the first bad example, as the host).
template <typename TypeParam>
class GenerativeLossDeathChecks : public GenerativeLossLayerTest<TypeParam> {
 protected:
  void ExpectLabelDeaths() {
    ::testing::FLAGS_gtest_death_test_style = "threadsafe";
    LayerParameter layer_param;
    GenerativeLossLayer<float> layer(layer_param);
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    float* label = this->blob_bottom_label_->mutable_cpu_data();
    label[3] = 5;
    EXPECT_DEATH(layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_),
                 "example 3 has label 5, outside the classes \\[0, 5\\)");
    label[3] = -1;
    label[8] = -2;
    EXPECT_DEATH(layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_),
                 "example 3 has label -1, outside the classes.*"
                 "semi-supervised mode off");
    label[3] = 1.5;
    EXPECT_DEATH(layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_),
                 "labels must be integers; example 3");
    label[3] = NAN;
    EXPECT_DEATH(layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_),
                 "labels must be integers; example 3");
  }

  void ExpectNonFiniteScoreDeaths() {
    ::testing::FLAGS_gtest_death_test_style = "threadsafe";
    LayerParameter layer_param;
    GenerativeLossLayer<float> layer(layer_param);
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    float* score = this->blob_bottom_score_->mutable_cpu_data();
    score[7] = NAN;
    EXPECT_DEATH(layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_),
                 "class column 2 has a non-finite score");
    score[7] = 0;
    score[9] = INFINITY;
    EXPECT_DEATH(layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_),
                 "class column 4 has a non-finite score");
  }
};

typedef GenerativeLossDeathChecks<CPUDevice<float> > GenerativeLossDeathTest;

TEST_F(GenerativeLossDeathTest, LabelOutOfRange) { ExpectLabelDeaths(); }

TEST_F(GenerativeLossDeathTest, NonFiniteScore) {
  ExpectNonFiniteScoreDeaths();
}

#ifndef CPU_ONLY
typedef GenerativeLossDeathChecks<GPUDevice<float> > GenerativeLossGPUDeathTest;

TEST_F(GenerativeLossGPUDeathTest, LabelOutOfRange) { ExpectLabelDeaths(); }

TEST_F(GenerativeLossGPUDeathTest, NonFiniteScore) {
  ExpectNonFiniteScoreDeaths();
}
#endif

TEST_F(GenerativeLossDeathTest, ShapeMismatches) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  LayerParameter layer_param;
  {
    GenerativeLossLayer<float> layer(layer_param);
    blob_bottom_label_->Reshape(9, 1, 1, 1);
    EXPECT_DEATH(layer.SetUp(blob_bottom_vec_, blob_top_vec_),
                 "same first dimension");
  }
  {
    GenerativeLossLayer<float> layer(layer_param);
    blob_bottom_label_->Reshape(10, 2, 1, 1);
    EXPECT_DEATH(layer.SetUp(blob_bottom_vec_, blob_top_vec_),
                 "labels must hold one value per example");
  }
  {
    GenerativeLossLayer<float> layer(layer_param);
    blob_bottom_label_->Reshape(10, 1, 1, 1);
    blob_bottom_score_->Reshape(10, 5, 2, 1);
    EXPECT_DEATH(layer.SetUp(blob_bottom_vec_, blob_top_vec_),
                 "scores must be N x C");
  }
  {
    GenerativeLossLayer<float> layer(layer_param);
    blob_bottom_score_->Reshape(10, 5, 1, 1);
    vector<Blob<float>*> one_bottom(1, blob_bottom_score_);
    EXPECT_DEATH(layer.SetUp(one_bottom, blob_top_vec_),
                 "takes 2 bottom blob");
  }
}

TEST_F(GenerativeLossDeathTest, BadParameters) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  {
    LayerParameter layer_param;
    layer_param.mutable_generative_loss_param()->add_class_prior(1);
    GenerativeLossLayer<float> layer(layer_param);
    EXPECT_DEATH(layer.SetUp(blob_bottom_vec_, blob_top_vec_),
                 "class_prior needs one value per class \\(5 classes\\)");
  }
  {
    LayerParameter layer_param;
    layer_param.mutable_generative_loss_param()->set_unlabeled_weight(-1);
    GenerativeLossLayer<float> layer(layer_param);
    EXPECT_DEATH(layer.SetUp(blob_bottom_vec_, blob_top_vec_),
                 "unlabeled_weight .* must be >= 0");
  }
  {
    LayerParameter layer_param;
    layer_param.mutable_generative_loss_param()->set_semi_supervised(true);
    layer_param.mutable_loss_param()->set_ignore_label(-1);
    GenerativeLossLayer<float> layer(layer_param);
    EXPECT_DEATH(layer.SetUp(blob_bottom_vec_, blob_top_vec_),
                 "ignore_label and generative_loss_param.unlabeled_label "
                 "must differ");
  }
}

#ifndef CPU_ONLY
// The GPU kernels against the CPU code on many random problems: loss, ESS and
// every score gradient. The two paths sum in different orders and use
// different exp/log, so they agree to rounding: |gpu - cpu| <= tol *
// max(1, |cpu|), tol 2e-5 for float and 1e-11 for double (float's epsilon is
// 1.2e-7; a column's log-sum-exp over 256 rows adds up to ~256 roundings).
template <typename Dtype>
class GenerativeLossGPUParityTest : public ::testing::Test {
 protected:
  struct Outputs {
    vector<Dtype> loss_ess;   // loss, ESS, the within-class diagnostics
    vector<Dtype> gradient;   // N x C
  };

  Outputs Run(Caffe::Brew mode, const LayerParameter& param,
      const Blob<Dtype>& score, const Blob<Dtype>& label, Dtype top_diff) {
    Caffe::set_mode(mode);
    Blob<Dtype> score_copy, label_copy, loss, ess, within, within_sd, cross;
    score_copy.CopyFrom(score, false, true);
    label_copy.CopyFrom(label, false, true);
    vector<Blob<Dtype>*> bottom, top;
    bottom.push_back(&score_copy);
    bottom.push_back(&label_copy);
    top.push_back(&loss);
    top.push_back(&ess);
    top.push_back(&within);
    top.push_back(&within_sd);
    top.push_back(&cross);
    GenerativeLossLayer<Dtype> layer(param);
    layer.SetUp(bottom, top);
    layer.Forward(bottom, top);
    loss.mutable_cpu_diff()[0] = top_diff;
    vector<bool> propagate_down(2, false);
    propagate_down[0] = true;
    layer.Backward(top, propagate_down, bottom);
    Outputs out;
    for (int i = 0; i < top.size(); ++i) {
      out.loss_ess.push_back(top[i]->cpu_data()[0]);
    }
    out.gradient.assign(score_copy.cpu_diff(),
                        score_copy.cpu_diff() + score_copy.count());
    return out;
  }

  static void ExpectClose(const vector<Dtype>& cpu, const vector<Dtype>& gpu,
      const std::string& what) {
    const double tol = sizeof(Dtype) == 4 ? 2e-5 : 1e-11;
    ASSERT_EQ(cpu.size(), gpu.size()) << what;
    for (size_t i = 0; i < cpu.size(); ++i) {
      ASSERT_TRUE(std::isfinite(gpu[i])) << what << " [" << i << "]";
      ASSERT_NEAR(gpu[i], cpu[i],
                  tol * std::max(1.0, std::fabs(double(cpu[i]))))
          << what << " [" << i << "]";
    }
  }
};

TYPED_TEST_CASE(GenerativeLossGPUParityTest, TestDtypes);

TYPED_TEST(GenerativeLossGPUParityTest, TestCPUEqualsGPURandomProblems) {
  typedef TypeParam Dtype;
  Caffe::set_random_seed(1702);
  // N below, at and far above the kernels' 16 rows per tile and 512 threads
  // per row block; C below, at and not a multiple of their 32-column tiles
  const int nums[] = {1, 2, 7, 64, 256, 1024};
  const int classes[] = {1, 2, 10, 1000};
  const LossParameter_NormalizationMode modes[] = {
      LossParameter_NormalizationMode_VALID,
      LossParameter_NormalizationMode_BATCH_SIZE,
      LossParameter_NormalizationMode_FULL,
      LossParameter_NormalizationMode_NONE};
  int problem = 0;
  for (int ni = 0; ni < 6; ++ni) {
    for (int ci = 0; ci < 4; ++ci) {
      for (int variant = 0; variant < 4; ++variant, ++problem) {
        const int num = nums[ni], classes_count = classes[ci];
        // variant 0: plain; 1: ignore_label; 2: semi-supervised with
        // unlabelled rows; 3: semi-supervised, ignore_label, class prior.
        LayerParameter param;
        param.mutable_loss_param()->set_normalization(modes[problem % 4]);
        const bool ignore = variant == 1 || variant == 3;
        const bool semi = variant >= 2;
        if (ignore) { param.mutable_loss_param()->set_ignore_label(-7); }
        if (semi) {
          GenerativeLossParameter* gp =
              param.mutable_generative_loss_param();
          gp->set_semi_supervised(true);
          gp->set_unlabeled_weight(0.1 + 0.2 * (problem % 3));
          if (variant == 3) {
            for (int c = 0; c < classes_count; ++c) {
              gp->add_class_prior(1 + caffe_rng_rand() % 5);
            }
          }
        }
        Blob<Dtype> score(num, classes_count, 1, 1), label(num, 1, 1, 1);
        FillerParameter filler_param;
        filler_param.set_std(1 + problem % 4);
        GaussianFiller<Dtype> filler(filler_param);
        filler.Fill(&score);
        for (int j = 0; j < num; ++j) {
          int y = caffe_rng_rand() % classes_count;
          const unsigned int draw = caffe_rng_rand() % 4;
          if (ignore && draw == 0) { y = -7; }
          if (semi && draw == 1) {
            y = -1;  // unlabelled: a clear arg-max, so that rounding
                     // cannot make CPU and GPU pick different classes
            score.mutable_cpu_data()[j * classes_count
                + caffe_rng_rand() % classes_count] += 12;
          }
          label.mutable_cpu_data()[j] = y;
        }
        const Dtype top_diff = 0.5 + (problem % 3);
        std::ostringstream what;
        what << "problem " << problem << ": N=" << num << " C="
             << classes_count << " variant " << variant << " normalization "
             << LossParameter_NormalizationMode_Name(modes[problem % 4]);
        const typename TestFixture::Outputs cpu =
            this->Run(Caffe::CPU, param, score, label, top_diff);
        const typename TestFixture::Outputs gpu =
            this->Run(Caffe::GPU, param, score, label, top_diff);
        this->ExpectClose(cpu.loss_ess, gpu.loss_ess, what.str() + " loss/ESS");
        this->ExpectClose(cpu.gradient, gpu.gradient,
                          what.str() + " gradient");
      }
    }
  }
  Caffe::set_mode(Caffe::CPU);
}

// The GPU sums in fixed trees (no atomics on values), so the same problem
// gives the same bits twice.
TYPED_TEST(GenerativeLossGPUParityTest, TestGPURepeatsBitForBit) {
  typedef TypeParam Dtype;
  Caffe::set_random_seed(1703);
  LayerParameter param;
  param.mutable_generative_loss_param()->set_semi_supervised(true);
  Blob<Dtype> score(1024, 1000, 1, 1), label(1024, 1, 1, 1);
  FillerParameter filler_param;
  filler_param.set_std(3);
  GaussianFiller<Dtype> filler(filler_param);
  filler.Fill(&score);
  for (int j = 0; j < 1024; ++j) {
    label.mutable_cpu_data()[j] = (j % 5 == 0) ? -1 : caffe_rng_rand() % 1000;
  }
  const typename TestFixture::Outputs first =
      this->Run(Caffe::GPU, param, score, label, Dtype(1));
  const typename TestFixture::Outputs second =
      this->Run(Caffe::GPU, param, score, label, Dtype(1));
  for (int i = 0; i < first.loss_ess.size(); ++i) {
    EXPECT_EQ(first.loss_ess[i], second.loss_ess[i]) << "top " << i;
  }
  for (int i = 0; i < first.gradient.size(); ++i) {
    ASSERT_EQ(first.gradient[i], second.gradient[i]) << "score " << i;
  }
  Caffe::set_mode(Caffe::CPU);
}

#endif  // CPU_ONLY

}  // namespace caffe
