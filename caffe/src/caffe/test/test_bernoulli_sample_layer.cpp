#include <cmath>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/bernoulli_sample_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"

namespace caffe {

// The layer's statistics, checked on every device and data type:
//   - each sample is exactly 0 or 1; probability 0 never gives 1, 1 always;
//   - per probability level, the sample mean over kRepeats independent units
//     lies within kTolerance standard errors sqrt(p (1 - p) / kRepeats) of p;
//   - over a blob of uniformly random probabilities, sum(y - p) lies within
//     kTolerance standard errors sqrt(sum p (1 - p)) of 0;
//   - neighbouring units and successive forward passes are independent: the
//     frequency of (1, 1) pairs at p = 1/2 is 1/4 within kTolerance standard
//     errors (a layer reusing one uniform number for several units, or for
//     several passes, would give 1/2);
//   - the same seed gives the same samples, another seed others;
//   - backward gives no gradient.
// With kTolerance = 5 a correct layer fails a given check with probability
// below 1e-6 (and the tests are deterministic for their fixed seed).
static const int kRepeats = 20000;
static const double kTolerance = 5.0;

template <typename TypeParam>
class BernoulliSampleLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  BernoulliSampleLayerTest()
      : blob_bottom_(new Blob<Dtype>()), blob_top_(new Blob<Dtype>()) {
    Caffe::set_random_seed(1701);
    blob_bottom_vec_.push_back(blob_bottom_);
    blob_top_vec_.push_back(blob_top_);
  }
  virtual ~BernoulliSampleLayerTest() {
    delete blob_bottom_;
    delete blob_top_;
  }

  // bottom = kRepeats rows of the probabilities `levels`
  void FillLevels(const vector<double>& levels) {
    const int columns = levels.size();
    blob_bottom_->Reshape(kRepeats, columns, 1, 1);
    Dtype* data = blob_bottom_->mutable_cpu_data();
    for (int i = 0; i < kRepeats; ++i) {
      for (int j = 0; j < columns; ++j) {
        data[i * columns + j] = levels[j];
      }
    }
  }

  void ExpectBinary(const Blob<Dtype>& blob) {
    const Dtype* sample = blob.cpu_data();
    for (int i = 0; i < blob.count(); ++i) {
      ASSERT_TRUE(sample[i] == Dtype(0) || sample[i] == Dtype(1))
          << "element " << i << " is " << sample[i];
    }
  }

  Blob<Dtype>* const blob_bottom_;
  Blob<Dtype>* const blob_top_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(BernoulliSampleLayerTest, TestDtypesAndDevices);

TYPED_TEST(BernoulliSampleLayerTest, TestSetUpShape) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_bottom_->Reshape(2, 3, 4, 5);
  LayerParameter layer_param;
  BernoulliSampleLayer<Dtype> layer(layer_param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape(), this->blob_bottom_->shape());
}

TYPED_TEST(BernoulliSampleLayerTest, TestMeansMatchProbabilities) {
  typedef typename TypeParam::Dtype Dtype;
  vector<double> levels;
  const double kLevels[] = {0.0, 1.0, 0.001, 0.1, 0.25, 0.5, 0.7, 0.95, 0.999};
  for (int j = 0; j < sizeof(kLevels) / sizeof(kLevels[0]); ++j) {
    levels.push_back(kLevels[j]);
  }
  this->FillLevels(levels);
  LayerParameter layer_param;
  BernoulliSampleLayer<Dtype> layer(layer_param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  this->ExpectBinary(*this->blob_top_);
  const Dtype* sample = this->blob_top_->cpu_data();
  const int columns = levels.size();
  for (int j = 0; j < columns; ++j) {
    // the level as the layer sees it (a float Dtype rounds 0.1 etc.)
    const double p = static_cast<Dtype>(levels[j]);
    double ones = 0;
    for (int i = 0; i < kRepeats; ++i) {
      ones += sample[i * columns + j];
    }
    const double mean = ones / kRepeats;
    if (p == 0 || p == 1) {
      EXPECT_EQ(mean, p) << "probability " << p << " must be sampled exactly";
      continue;
    }
    const double standard_error = std::sqrt(p * (1 - p) / kRepeats);
    EXPECT_NEAR(mean, p, kTolerance * standard_error)
        << "probability " << p << ": sample mean " << mean << " over "
        << kRepeats << " units";
  }
}

TYPED_TEST(BernoulliSampleLayerTest, TestRandomProbabilitiesInPlace) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_bottom_->Reshape(50, 4, 25, 20);  // 100,000 units
  FillerParameter filler_param;  // uniform in [0, 1]
  UniformFiller<Dtype> filler(filler_param);
  filler.Fill(this->blob_bottom_);
  Blob<Dtype> prob;
  prob.CopyFrom(*this->blob_bottom_, false, true);
  LayerParameter layer_param;
  BernoulliSampleLayer<Dtype> layer(layer_param);
  // in place: the samples overwrite the probabilities
  layer.SetUp(this->blob_bottom_vec_, this->blob_bottom_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_bottom_vec_);
  this->ExpectBinary(*this->blob_bottom_);
  double deviation = 0, variance = 0;
  for (int i = 0; i < prob.count(); ++i) {
    const double p = prob.cpu_data()[i];
    deviation += this->blob_bottom_->cpu_data()[i] - p;
    variance += p * (1 - p);
  }
  EXPECT_LE(std::fabs(deviation), kTolerance * std::sqrt(variance))
      << "sum of (sample - probability) over " << prob.count() << " units";
}

TYPED_TEST(BernoulliSampleLayerTest, TestUnitsAndPassesAreIndependent) {
  typedef typename TypeParam::Dtype Dtype;
  vector<double> levels(2, 0.5);
  this->FillLevels(levels);
  LayerParameter layer_param;
  BernoulliSampleLayer<Dtype> layer(layer_param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  Blob<Dtype> first;
  first.CopyFrom(*this->blob_top_, false, true);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const Dtype* a = first.cpu_data();
  const Dtype* b = this->blob_top_->cpu_data();
  double neighbours = 0, passes = 0;
  for (int i = 0; i < kRepeats; ++i) {
    neighbours += a[2 * i] * a[2 * i + 1];
    passes += a[2 * i] * b[2 * i];
  }
  const double standard_error = std::sqrt(0.25 * 0.75 / kRepeats);
  EXPECT_NEAR(neighbours / kRepeats, 0.25, kTolerance * standard_error)
      << "frequency of (1, 1) for two neighbouring units at p = 1/2";
  EXPECT_NEAR(passes / kRepeats, 0.25, kTolerance * standard_error)
      << "frequency of (1, 1) for one unit in two forward passes at p = 1/2";
}

TYPED_TEST(BernoulliSampleLayerTest, TestSeedingIsReproducible) {
  typedef typename TypeParam::Dtype Dtype;
  vector<double> levels(3);
  levels[0] = 0.2;
  levels[1] = 0.5;
  levels[2] = 0.8;
  this->FillLevels(levels);
  LayerParameter layer_param;
  BernoulliSampleLayer<Dtype> layer(layer_param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  Blob<Dtype> samples[3];
  const int seeds[3] = {42, 42, 43};
  for (int run = 0; run < 3; ++run) {
    Caffe::set_random_seed(seeds[run]);
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    samples[run].CopyFrom(*this->blob_top_, false, true);
  }
  int same = 0, differ = 0;
  for (int i = 0; i < this->blob_top_->count(); ++i) {
    same += samples[0].cpu_data()[i] == samples[1].cpu_data()[i];
    differ += samples[0].cpu_data()[i] != samples[2].cpu_data()[i];
  }
  EXPECT_EQ(same, this->blob_top_->count()) << "seed 42 twice";
  // another seed: about 2 p (1 - p) of the units differ (~40% here)
  EXPECT_GT(differ, this->blob_top_->count() / 4) << "seeds 42 and 43";
}

TYPED_TEST(BernoulliSampleLayerTest, TestBackwardGivesNoGradient) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_bottom_->Reshape(2, 3, 4, 5);
  FillerParameter filler_param;
  UniformFiller<Dtype> filler(filler_param);
  filler.Fill(this->blob_bottom_);
  LayerParameter layer_param;
  BernoulliSampleLayer<Dtype> layer(layer_param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  caffe_set(this->blob_top_->count(), Dtype(1),
            this->blob_top_->mutable_cpu_diff());
  caffe_set(this->blob_bottom_->count(), Dtype(7),
            this->blob_bottom_->mutable_cpu_diff());
  vector<bool> propagate_down(1, true);
  layer.Backward(this->blob_top_vec_, propagate_down, this->blob_bottom_vec_);
  for (int i = 0; i < this->blob_bottom_->count(); ++i) {
    ASSERT_EQ(this->blob_bottom_->cpu_diff()[i], Dtype(0)) << "element " << i;
  }
  // not asked to propagate: the bottom diff is left alone
  caffe_set(this->blob_bottom_->count(), Dtype(7),
            this->blob_bottom_->mutable_cpu_diff());
  propagate_down[0] = false;
  layer.Backward(this->blob_top_vec_, propagate_down, this->blob_bottom_vec_);
  for (int i = 0; i < this->blob_bottom_->count(); ++i) {
    ASSERT_EQ(this->blob_bottom_->cpu_diff()[i], Dtype(7)) << "element " << i;
  }
}

}  // namespace caffe
